"""Tests of the deployment: the Helm chart, its RBAC and mTLS material, the container images."""
