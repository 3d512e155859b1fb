"""Test support for the node agent: throwaway PKI, an in-process agent on port 0, client channels."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from nodeagent.server import AgentServer, build_server
from nodeagent.service import NodeChecks
from nodeagent.settings import AgentSettings
from tests.certs import Pem, make_ca, make_leaf

__all__ = ["Pem", "Pki", "client_channel", "make_ca", "make_leaf", "make_pki", "running_agent", "tls_settings"]


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate, a client certificate it signed, and a client from another CA."""

    ca: Pem
    server: Pem
    client: Pem
    stranger: Pem
    ca_file: Path
    server_cert_file: Path
    server_key_file: Path


def make_pki(directory: Path) -> Pki:
    """Write a test PKI under `directory` (files prefixed `ka-`)."""
    ca, ca_key, ca_cert = make_ca("ka-test-ca")
    _, other_key, other_cert = make_ca("ka-other-ca")
    pki = Pki(
        ca=ca,
        server=make_leaf(ca_key, ca_cert, "localhost", server=True),
        client=make_leaf(ca_key, ca_cert, "ka-bot", server=False),
        stranger=make_leaf(other_key, other_cert, "ka-stranger", server=False),
        ca_file=directory / "ka-ca.pem",
        server_cert_file=directory / "ka-server.pem",
        server_key_file=directory / "ka-server-key.pem",
    )
    pki.ca_file.write_bytes(pki.ca.cert)
    pki.server_cert_file.write_bytes(pki.server.cert)
    pki.server_key_file.write_bytes(pki.server.key)
    return pki


def tls_settings(pki: Pki, **extra: object) -> AgentSettings:
    """Agent settings serving mTLS on 127.0.0.1:0 with the PKI's files."""
    return AgentSettings(
        listen="127.0.0.1:0",
        tls_cert=pki.server_cert_file,
        tls_key=pki.server_key_file,
        tls_client_ca=pki.ca_file,
        **extra,  # type: ignore[arg-type]
    )


def client_channel(pki: Pki, port: int, client: Pem | None = None, *, with_cert: bool = True) -> grpc.Channel:
    """A channel to the agent that trusts the PKI's CA, presenting `client` (default: the good one)."""
    identity = client or pki.client
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.cert,
        private_key=identity.key if with_cert else None,
        certificate_chain=identity.cert if with_cert else None,
    )
    return grpc.secure_channel(f"localhost:{port}", credentials)


@contextmanager
def running_agent(settings: AgentSettings, checks: NodeChecks | None = None) -> Iterator[AgentServer]:
    """Run the agent's aio server on a private event loop thread; stop it and the loop afterwards."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        agent = await build_server(settings, checks)
        await agent.start()
        holder["agent"] = agent

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # noqa: BLE001 - carried to the test thread
            holder["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="ka-agent-loop", daemon=True)
    thread.start()
    started.wait(30)
    if "error" in holder:
        thread.join(5)
        loop.close()
        raise holder["error"]  # type: ignore[misc]
    agent = holder["agent"]
    assert isinstance(agent, AgentServer)
    try:
        yield agent
    finally:
        asyncio.run_coroutine_threadsafe(agent.stop(0.5), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
