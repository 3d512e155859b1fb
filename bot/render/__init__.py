"""kubereach bot: render."""
