"""The lab: a Kubernetes data plane rebuilt from real Linux parts in network namespaces on one machine."""
