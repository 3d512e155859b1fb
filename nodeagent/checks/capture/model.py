"""The capture's plain data: what to match, where to watch, the bounds, and what each point saw.

Everything here arrives validated (`nodeagent.validation.capture_start`); addresses are IPv4 in
host byte order so the filter compiler can compare them with the kernel's 32-bit loads.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17


@dataclass(frozen=True)
class CaptureMatchSpec:
    """Which packets belong to the probe: its protocol, with `port` as source or destination port and
    an address of `addresses` on either side; the same inside VXLAN on `overlay_udp_port` (and `vni`);
    ICMP errors quoting such a packet when `icmp`."""

    protocol: int
    addresses: tuple[int, ...]
    port: int
    overlay_udp_port: int | None = None
    vni: int | None = None
    icmp: bool = False

    @staticmethod
    def address_value(text: str) -> int:
        """An IPv4 literal as the 32-bit number the kernel loads from the header."""
        return int(ipaddress.IPv4Address(text))


@dataclass(frozen=True)
class CaptureLimits:
    """The bounds of one capture set: how long after arming, and what each point keeps."""

    max_duration_s: float
    max_packets: int
    max_bytes: int


@dataclass(frozen=True)
class PointRequest:
    """One interface to watch, in the node's namespace, a pod's (by IP) or a named one."""

    interface: str
    pod_ip: str | None = None
    netns_name: str | None = None


@dataclass(frozen=True)
class CapturedPacket:
    """The headers of one captured packet (inner ones for VXLAN, the quoted ones for an ICMP error)."""

    ts_ms: float
    outgoing: bool
    protocol: int
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    tcp_flags: str
    ttl: int
    length: int
    dont_fragment: bool
    encapsulated: bool = False
    outer_src_ip: str = ""
    outer_dst_ip: str = ""
    vni: int = 0
    icmp: bool = False
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_mtu: int = 0


@dataclass
class PointResult:
    """What one point saw (filled in while the capture runs; read once it has ended)."""

    point: PointRequest
    netns_inode: int = 0
    ifindex: int = 0
    packets: int = 0
    first_seen_ms: float = 0.0
    last_seen_ms: float = 0.0
    samples: list[CapturedPacket] = field(default_factory=list)
    kept_bytes: int = 0
    kernel_drops: int = 0
    error: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class CaptureOutcome:
    """The end of a capture set: every point in request order, how long it ran and why it ended."""

    points: tuple[PointResult, ...]
    duration_ms: float
    reason: str
