"""Loading the agent's TLS material and building mutual-TLS server credentials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


class TlsMaterialError(ValueError):
    """A certificate, key or CA file cannot be read or is not PEM."""


@dataclass(frozen=True)
class ServerTlsMaterial:
    """PEM bytes of the server certificate chain, its key and the CA that signs client certificates."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes


def read_pem(path: Path, what: str) -> bytes:
    """Read one PEM file, failing with a message that names the file and what it should hold."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsMaterialError(f"cannot read the {what} at {path}: {exc.strerror}") from exc
    if b"-----BEGIN " not in data:
        raise TlsMaterialError(f"the {what} at {path} is not PEM (no BEGIN line)")
    return data


def load_server_tls(cert: Path, key: Path, client_ca: Path) -> ServerTlsMaterial:
    """Read the server certificate, key and client CA files."""
    return ServerTlsMaterial(
        cert_chain=read_pem(cert, "server certificate"),
        private_key=read_pem(key, "server private key"),
        client_ca=read_pem(client_ca, "client CA bundle"),
    )


def server_credentials(material: ServerTlsMaterial) -> grpc.ServerCredentials:
    """Credentials that require and verify a client certificate signed by the client CA."""
    return grpc.ssl_server_credentials(
        [(material.private_key, material.cert_chain)],
        root_certificates=material.client_ca,
        require_client_auth=True,
    )
