"""kubereach bot: digest."""
