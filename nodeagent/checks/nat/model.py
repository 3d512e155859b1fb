"""What a NAT lookup answers: the result types every kube-proxy mode's walk returns (pure)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

MAX_EVIDENCE_RULES = 40
PROTOCOLS = ("TCP", "UDP", "SCTP")


class NatStateError(RuntimeError):
    """kube-proxy's rules could not be read (tool missing, failed or printed something unreadable)."""


@dataclass(frozen=True)
class NatEndpoint:
    """One DNAT destination of a service.

    `probability` is what the rule says: in iptables mode the chance of this endpoint *given that the
    earlier ones were not taken* (None for the last one, which takes the rest); in nftables mode the
    share of `numgen random mod N` (1/N each).
    """

    ip: str
    port: int
    chain: str | None
    probability: float | None


@dataclass(frozen=True)
class ServiceNat:
    """How kube-proxy handles VIP:port/protocol on this node."""

    mode: str
    vip: str
    port: int
    protocol: str
    programmed: bool
    service_name: str | None
    service_chain: str | None
    endpoints: tuple[NatEndpoint, ...]
    no_endpoints_action: str | None
    session_affinity: bool
    rules: tuple[str, ...]
    layout: str = ""
    """How the rules that decided are laid out (nftables: `NFT_LAYOUTS`); empty when nothing was walked."""
    unreadable: str = ""
    """Why the rules could not be read (a layout kubereach does not read yet); empty when they were.
    When set, `programmed`, `endpoints` and `no_endpoints_action` say nothing about the service."""
    entry: str = ""
    """For traffic from outside the cluster: "nodeport", "external-ip" or "load-balancer" (the walk
    `ingress` made); empty for a ClusterIP walk. `endpoints` are then those external traffic reaches
    from this node."""
    external_policy: str = ""
    """For an entry walk: "Local" when the rules send external traffic only to this node's endpoints
    (externalTrafficPolicy Local), "Cluster" when to every endpoint; empty when the rules do not say."""
    health_check_node_port: int | None = None
    """For an entry walk: the health check node port the filter table ACCEPTs for this service (iptables
    mode; nftables mode writes no rule for it), None when none is programmed."""


def validate(vip: str, port: int, protocol: str) -> None:
    """ValueError unless VIP is an address, port is 1-65535 and protocol is TCP, UDP or SCTP."""
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    try:
        socket.inet_pton(family, vip)
    except OSError as exc:
        raise ValueError(f"not an IP address: {vip[:64]!r}") from exc
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    if protocol.upper() not in PROTOCOLS:
        raise ValueError(f"protocol {protocol[:16]!r} is not one of TCP, UDP, SCTP")


def not_programmed(mode: str, vip: str, port: int, protocol: str, note: str) -> ServiceNat:
    """A result for a VIP no rule handles, with `note` as its only evidence."""
    return ServiceNat(
        mode=mode,
        vip=vip,
        port=port,
        protocol=protocol.upper(),
        programmed=False,
        service_name=None,
        service_chain=None,
        endpoints=(),
        no_endpoints_action=None,
        session_affinity=False,
        rules=(note,),
    )
