"""kubereach bot: slack."""
