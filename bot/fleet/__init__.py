"""kubereach bot: fleet."""
