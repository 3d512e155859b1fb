"""kubereach bot: fan-out to the node agents."""
