"""Kubeconfig files that point the official client and kubectl at the lab API server.

The file is JSON, which is valid YAML, so `kubernetes.config.load_kube_config(config_file=...)` and
kubectl read it as they read any kubeconfig. It holds the bearer token, so it is written mode 0600.
Note that kubectl (client-go) sends the token only over https: for kubectl, start the server with a
`ServingCertificate` and pass its `cert_pem` as `ca_pem`.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

LAB_CONTEXT = "kubereach-lab"


def kubeconfig_document(
    server_url: str,
    token: str,
    *,
    context: str = LAB_CONTEXT,
    namespace: str = "default",
    ca_pem: bytes | None = None,
) -> dict[str, Any]:
    """The kubeconfig content: one cluster, one token user, one context (current).

    `ca_pem`: the certificate of an https server (`ServingCertificate.cert_pem`), trusted as its CA.
    """
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
    }


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    token: str,
    *,
    context: str = LAB_CONTEXT,
    namespace: str = "default",
    ca_pem: bytes | None = None,
) -> Path:
    """Write a kubeconfig for `server_url` with `token` to `path` (mode 0600, replaced atomically)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        document = kubeconfig_document(server_url, token, context=context, namespace=namespace, ca_pem=ca_pem)
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(staging, target)
    return target
