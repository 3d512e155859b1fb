"""Headers of a captured packet, parsed from its first bytes: Ethernet, IPv4 (DF, TTL), TCP (flags as
tcpdump prints them), UDP, VXLAN (outer and inner packet), ICMP errors (type, code, the next-hop MTU
of a frag-needed, and the quoted packet's tuple). Payloads are never read.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, replace

from nodeagent.checks.capture.bpf import ETH_HLEN, ETHERTYPE_IPV4, ICMP_ERROR_TYPES, VXLAN_INNER_IP
from nodeagent.checks.capture.model import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP

ICMP_UNREACHABLE = 3
ICMP_FRAG_NEEDED = 4
TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"), (0x40, "E"), (0x80, "W"))
"""tcpdump's order: FIN, SYN, RST, PUSH, ACK ("."), URG, ECE, CWR."""


@dataclass(frozen=True)
class Headers:
    """What the headers of one packet say (see `CapturedPacket` for each field)."""

    protocol: int
    src_ip: str
    dst_ip: str
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: str = ""
    ttl: int = 0
    dont_fragment: bool = False
    encapsulated: bool = False
    outer_src_ip: str = ""
    outer_dst_ip: str = ""
    vni: int = 0
    icmp: bool = False
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_mtu: int = 0


@dataclass(frozen=True)
class _Ipv4:
    header_length: int
    protocol: int
    src: str
    dst: str
    ttl: int
    dont_fragment: bool
    first_fragment: bool


def tcp_flag_letters(flags: int) -> str:
    """TCP flags as tcpdump prints them ("S", "S.", "R.", "F.", "P."); "none" when no flag is set."""
    letters = "".join(letter for bit, letter in TCP_FLAG_LETTERS if flags & bit)
    return letters or "none"


def _ipv4(data: bytes, at: int) -> _Ipv4 | None:
    if len(data) < at + 20 or data[at] >> 4 != 4:
        return None
    header_length = (data[at] & 0x0F) * 4
    if header_length < 20 or len(data) < at + header_length:
        return None
    frag = struct.unpack_from("!H", data, at + 6)[0]
    return _Ipv4(
        header_length=header_length,
        protocol=data[at + 9],
        src=socket.inet_ntoa(data[at + 12 : at + 16]),
        dst=socket.inet_ntoa(data[at + 16 : at + 20]),
        ttl=data[at + 8],
        dont_fragment=bool(frag & 0x4000),
        first_fragment=frag & 0x1FFF == 0,
    )


def _ports(data: bytes, at: int) -> tuple[int, int]:
    if len(data) < at + 4:
        return 0, 0
    src, dst = struct.unpack_from("!HH", data, at)
    return int(src), int(dst)


def _transport(data: bytes, ip: _Ipv4, at: int) -> Headers:
    """The packet whose IPv4 header `ip` starts at `at`: its tuple, flags, TTL and DF."""
    l4 = at + ip.header_length
    ports = _ports(data, l4) if ip.first_fragment and ip.protocol in {IPPROTO_TCP, IPPROTO_UDP} else (0, 0)
    flags = ""
    if ip.protocol == IPPROTO_TCP and ip.first_fragment and len(data) > l4 + 13:
        flags = tcp_flag_letters(data[l4 + 13])
    return Headers(ip.protocol, ip.src, ip.dst, ports[0], ports[1], flags, ip.ttl, ip.dont_fragment)


def _icmp_error(data: bytes, ip: _Ipv4, at: int, overlay_udp_port: int | None, depth: int) -> Headers | None:
    """An ICMP error (type, code, frag-needed MTU) with the quoted packet's tuple (the inner one when
    it quotes a VXLAN packet); None for other ICMP."""
    icmp = at + ip.header_length
    if len(data) < icmp + 8 or data[icmp] not in ICMP_ERROR_TYPES:
        return None
    kind, code = data[icmp], data[icmp + 1]
    mtu = struct.unpack_from("!H", data, icmp + 6)[0] if (kind, code) == (ICMP_UNREACHABLE, ICMP_FRAG_NEEDED) else 0
    quoted = _describe(data, icmp + 8, overlay_udp_port, depth + 1)
    if quoted is None or quoted.icmp:
        return None  # no error about an error
    return replace(
        quoted,
        protocol=IPPROTO_ICMP,
        tcp_flags="",
        ttl=ip.ttl,
        dont_fragment=ip.dont_fragment,
        icmp=True,
        icmp_type=kind,
        icmp_code=code,
        icmp_mtu=int(mtu),
    )


def _vxlan_inner(data: bytes, outer: _Ipv4, at: int, overlay_udp_port: int | None, depth: int) -> Headers | None:
    """The inner packet of a VXLAN packet whose outer IPv4 header starts at `at`, or None when it is not one."""
    if overlay_udp_port is None or outer.protocol != IPPROTO_UDP or not outer.first_fragment:
        return None
    udp = at + outer.header_length
    if overlay_udp_port not in _ports(data, udp):
        return None
    inner_eth = udp + 16
    if len(data) < inner_eth + ETH_HLEN or struct.unpack_from("!H", data, inner_eth + 12)[0] != ETHERTYPE_IPV4:
        return None
    inner = _describe(data, at + outer.header_length + VXLAN_INNER_IP, overlay_udp_port, depth + 1)
    if inner is None or inner.encapsulated:
        return None
    vni = struct.unpack_from("!I", data, udp + 12)[0] >> 8
    return replace(inner, encapsulated=True, outer_src_ip=outer.src, outer_dst_ip=outer.dst, vni=vni)


MAX_NESTING = 3
"""VXLAN in an ICMP error in VXLAN at most: deeper is no packet of a probe."""


def _describe(data: bytes, at: int, overlay_udp_port: int | None, depth: int = 0) -> Headers | None:
    if depth >= MAX_NESTING:
        return None
    ip = _ipv4(data, at)
    if ip is None:
        return None
    encapsulated = _vxlan_inner(data, ip, at, overlay_udp_port, depth)
    if encapsulated is not None:
        return encapsulated
    if ip.protocol == IPPROTO_ICMP:
        return _icmp_error(data, ip, at, overlay_udp_port, depth)
    return _transport(data, ip, at)


def parse_headers(data: bytes, link_header: int, overlay_udp_port: int | None) -> Headers | None:
    """The headers of a packet whose IPv4 header starts `link_header` bytes in; None when it is not
    IPv4 or too short. A UDP packet to or from `overlay_udp_port` carrying IPv4 in Ethernet is
    VXLAN: the inner packet's headers with the outer addresses and the VNI. An ICMP error gives the
    quoted packet's tuple; when it quotes a VXLAN packet, the inner tuple with the quoted outer
    addresses (`encapsulated`)."""
    if link_header == ETH_HLEN and (len(data) < ETH_HLEN or struct.unpack_from("!H", data, 12)[0] != ETHERTYPE_IPV4):
        return None
    return _describe(data, link_header, overlay_udp_port)
