"""kubereach bot: playbook."""
