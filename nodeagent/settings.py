"""The agent's settings: environment variables with prefix KUBEREACH_AGENT_, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    """Everything the node agent needs to start; passed in, never read from the environment later."""

    model_config = SettingsConfigDict(env_prefix="KUBEREACH_AGENT_", frozen=True, extra="forbid", use_attribute_docstrings=True)

    node: str = Field(default="", max_length=253)
    """The Kubernetes node name this agent speaks for (reported in GetNodeInfo)."""

    listen: str = "127.0.0.1:0"
    """host:port the gRPC server binds; port 0 lets the kernel choose (see port_file)."""

    host_netns: str | None = None
    """A named namespace under /var/run/netns to treat as the node's own (the lab); unset in production."""

    bpffs: Path | None = Path("/sys/fs/bpf")
    """Where the BPF filesystem is mounted: the names of pinned maps under it (Cilium's load balancer
    maps in tc/globals) tell which dataplane does service NAT. Only listed, never opened or created."""

    tls_cert: Path | None = None
    """PEM server certificate presented to clients."""

    tls_key: Path | None = None
    """PEM private key of tls_cert."""

    tls_client_ca: Path | None = None
    """PEM CA bundle; clients must present a certificate signed by it (mutual TLS)."""

    insecure: bool = False
    """Serve plain TCP without TLS (development only; a warning is logged)."""

    port_file: Path | None = None
    """Where to write the bound port, atomically, once the server listens."""

    log_format: Literal["json", "text"] = "text"
    """Log line format."""

    log_level: str = "INFO"
    """Python logging level name."""

    max_workers: int = Field(default=8, ge=1, le=64)
    """Threads that run probes (TCP/UDP/DNS), the slow kernel work; a bounded pool so a burst cannot
    exhaust the host. At most 8 probes per thread are admitted at once; more are refused as busy."""

    read_workers: int = Field(default=4, ge=1, le=64)
    """Threads that run quick reads (node info, conntrack, routes, filter, sockets, NAT), apart from
    the probes, so a flood of slow probes never starves them. At most 8 per thread are admitted at once."""

    check_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    """Longest a single check may run, also when the client's deadline is longer or absent."""

    grace_seconds: float = Field(default=5.0, ge=0, le=60)
    """How long in-flight calls may finish after SIGTERM before they are cancelled."""

    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Plaintext port serving only grpc.health.v1 (mirroring the main server's status), for kubelet
    gRPC probes, which cannot present a client certificate. Unset: no such listener."""

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Prometheus `/metrics` endpoint (RPC latency and errors per method, conntrack fill).
    Unset: no metrics listener."""

    metrics_port_file: Path | None = None
    """Where to write the bound metrics port once listening (with --metrics-port 0)."""

    ops_host: str = "0.0.0.0"
    """Address the health and metrics listeners bind."""
