"""Kubeconfig files for the upstream control plane's clients, one per identity.

Client-certificate kubeconfigs name the lab's PEM files (nothing is copied); token kubeconfigs carry
their token, so every file is written mode 0600. All of them trust the API server through the lab's
CA (`certificate-authority-data`), which is what kubectl and client-go require to send credentials.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from lab.certs import CertPair

LAB_CLUSTER = "kubereach-lab"


def _document(server: str, ca_pem: bytes, user_name: str, user: dict[str, str], namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": LAB_CLUSTER,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {"name": f"{user_name}@{LAB_CLUSTER}", "context": {"cluster": LAB_CLUSTER, "user": user_name, "namespace": namespace}}
        ],
        "current-context": f"{user_name}@{LAB_CLUSTER}",
    }


def cert_kubeconfig(server: str, ca_pem: bytes, pair: CertPair, user_name: str, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig that authenticates with the client certificate `pair`."""
    user = {"client-certificate": str(pair.cert), "client-key": str(pair.key)}
    return _document(server, ca_pem, user_name, user, namespace)


def token_kubeconfig(server: str, ca_pem: bytes, token: str, user_name: str, namespace: str = "default") -> dict[str, Any]:
    """A kubeconfig that authenticates with a bearer token."""
    return _document(server, ca_pem, user_name, {"token": token}, namespace)


def write_private_json(path: Path, document: dict[str, Any]) -> Path:
    """Write `document` as JSON (valid YAML, so a kubeconfig) mode 0600, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")
    os.replace(staging, path)
    return path
