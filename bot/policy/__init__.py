"""kubereach bot: policy."""
