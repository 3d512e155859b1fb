"""kubereach bot: parse."""
