"""Generated gRPC code for the kubereach agent API (see agent.proto)."""
