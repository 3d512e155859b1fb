"""kubereach bot: cluster."""
