"""Real packet bytes for the capture tests: Ethernet, IPv4, TCP, UDP, VXLAN and ICMP errors built the
way the kernel writes them (network byte order, header lengths, flags), with checksums left zero."""

from __future__ import annotations

import socket
import struct

MAC_A, MAC_B = bytes.fromhex("02aa00000001"), bytes.fromhex("02aa00000002")
TCP, UDP, ICMP = 6, 17, 1
SYN, ACK, RST = 0x02, 0x10, 0x04


def ethernet(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", ethertype) + payload


def ipv4(
    src: str,
    dst: str,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    df: bool = True,
    frag_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | frag_offset
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 0x1234, flags, ttl, protocol, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )  # fmt: skip
    return header + options + payload


def tcp(sport: int, dport: int, flags: int = SYN) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 64240, 0, 0)


def udp(sport: int, dport: int, payload: bytes = b"kubereach-probe\n") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def vxlan(outer_src: str, outer_dst: str, inner_frame: bytes, *, vni: int = 1, port: int = 8472, sport: int = 40000) -> bytes:
    """A VXLAN packet from one VTEP to another carrying `inner_frame` (an Ethernet frame)."""
    header = struct.pack("!II", 0x08000000, vni << 8)
    return ipv4(outer_src, outer_dst, UDP, udp(sport, port, header + inner_frame), df=False)


def icmp_error(kind: int, code: int, quoted: bytes, *, mtu: int = 0, quote: int = 0) -> bytes:
    """An ICMP error (type, code; the next-hop MTU for frag-needed) quoting an IP packet's header and
    8 bytes more, or its first `quote` bytes (Linux quotes up to 576 bytes in all)."""
    length = quote or (quoted[0] & 0x0F) * 4 + 8
    return struct.pack("!BBHHH", kind, code, 0, 0, mtu) + quoted[:length]
