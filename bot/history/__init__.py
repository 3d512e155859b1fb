"""kubereach bot: history."""
