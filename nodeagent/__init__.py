"""kubereach node agent: read-only inspection of one node's kernel network state, served over mTLS gRPC."""
