"""The capture's filter compiler and header parser on real packet bytes.

The compiled program is run here by a small classic-BPF interpreter (the kernel runs it in
tests/lab/test_capture_filter_kernel.py); the parser reads the same bytes the kernel hands the agent.
"""

from __future__ import annotations

import struct

import pytest

from nodeagent.checks.capture import CaptureMatchSpec, compile_filter, parse_headers
from nodeagent.checks.capture.bpf import MAX_JUMP, SNAPLEN, Instruction
from nodeagent.checks.capture.headers import tcp_flag_letters
from tests.unit.capture_packets import ACK, ICMP, RST, SYN, TCP, UDP, ethernet, icmp_error, ipv4, tcp, udp, vxlan

POD, VIP, NODE_A, NODE_B = "10.244.1.5", "10.96.0.20", "10.240.0.11", "10.240.0.12"
MARK = 40123


def spec(protocol: int = TCP, addresses: tuple[str, ...] = (POD, VIP), **extra: object) -> CaptureMatchSpec:
    values = tuple(CaptureMatchSpec.address_value(a) for a in addresses)
    return CaptureMatchSpec(protocol, values, MARK, **extra)  # type: ignore[arg-type]


def run_bpf(program: list[Instruction], packet: bytes) -> int:
    """Classic BPF as the kernel runs it (the subset the compiler emits); a load past the end returns 0."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        size = {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 0)
        if code & 0x07 == 0x00:  # ld abs / ind
            at = k + (x if code & 0xE0 == 0x40 else 0)
            if at + size > len(packet):
                return 0
            a = int.from_bytes(packet[at : at + size], "big")
        elif code == 0x01:
            x = k
        elif code == 0xB1:
            if k >= len(packet):
                return 0
            x = (packet[k] & 0x0F) * 4
        elif code == 0x54:
            a &= k
        elif code == 0x64:
            a = (a << k) & 0xFFFFFFFF
        elif code == 0x74:
            a >>= k
        elif code == 0x0C:
            a = (a + x) & 0xFFFFFFFF
        elif code == 0x07:
            x = a
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def kept(match: CaptureMatchSpec, frame: bytes, link_header: int = 14) -> bool:
    return run_bpf(compile_filter(match, link_header), frame) == SNAPLEN


def test_the_program_keeps_the_probe_and_its_reply_and_nothing_else() -> None:
    match = spec(overlay_udp_port=8472, icmp=True)
    assert kept(match, ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080))))
    assert kept(match, ethernet(ipv4(VIP, POD, TCP, tcp(8080, MARK, SYN | ACK))))
    assert not kept(match, ethernet(ipv4(POD, VIP, TCP, tcp(MARK + 1, 8080))))
    assert not kept(match, ethernet(ipv4("10.1.1.1", "10.1.1.2", TCP, tcp(MARK, 8080))))
    assert not kept(match, ethernet(ipv4(POD, VIP, UDP, udp(MARK, 53))))
    assert not kept(match, ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080))[:21]))  # cut inside the ports


def test_every_address_of_a_full_set_is_matched_on_either_side_and_jumps_stay_short() -> None:
    addresses = tuple(f"10.0.{i}.{i + 1}" for i in range(32))
    match = spec(UDP, addresses, overlay_udp_port=4789, vni=7, icmp=True)
    program = compile_filter(match, 14)
    assert len(program) < 4096 and all(jt <= MAX_JUMP and jf <= MAX_JUMP for _, jt, jf, _ in program)
    assert program[-1] == (0x06, 0, 0, 0)  # everything else is rejected
    for address in addresses:
        assert kept(match, ethernet(ipv4("192.0.2.1", address, UDP, udp(MARK, 53))))
        assert kept(match, ethernet(ipv4(address, "192.0.2.1", UDP, udp(53, MARK))))
    assert not kept(match, ethernet(ipv4("192.0.2.1", "192.0.2.2", UDP, udp(MARK, 53))))


def test_vxlan_needs_the_overlay_port_and_the_vni_and_looks_at_the_inner_packet() -> None:
    inner = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080)))
    match = spec(overlay_udp_port=8472, vni=1)
    assert kept(match, ethernet(vxlan(NODE_A, NODE_B, inner)))
    assert not kept(match, ethernet(vxlan(NODE_A, NODE_B, inner, vni=9)))
    assert not kept(match, ethernet(vxlan(NODE_A, NODE_B, inner, port=4789)))
    assert not kept(spec(), ethernet(vxlan(NODE_A, NODE_B, inner)))


def test_icmp_errors_quoting_the_probe_are_kept_only_when_asked() -> None:
    probe = ipv4(POD, VIP, UDP, udp(MARK, 53))
    frag_needed = ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(3, 4, probe, mtu=1400)))
    assert kept(spec(UDP, icmp=True), frag_needed)
    assert not kept(spec(UDP), frag_needed)
    assert not kept(spec(UDP, icmp=True), ethernet(ipv4(NODE_A, POD, ICMP, b"\x08\x00" + b"\x00" * 30)))


def test_an_underlay_icmp_error_quoting_the_vxlan_packet_of_the_probe_is_kept_and_parsed() -> None:
    inner = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080)))
    outer = vxlan(NODE_A, NODE_B, inner, vni=1)
    error = ethernet(ipv4("10.240.0.1", NODE_A, ICMP, icmp_error(3, 4, outer, mtu=1400, quote=len(outer))))
    match = spec(overlay_udp_port=8472, vni=1, icmp=True)
    assert kept(match, error)
    assert not kept(spec(overlay_udp_port=8472, vni=1), error)  # ICMP not asked for
    assert not kept(spec(overlay_udp_port=4789, icmp=True), error)  # another overlay port
    other = vxlan(NODE_A, NODE_B, ethernet(ipv4(POD, VIP, TCP, tcp(MARK + 1, 8080))))
    assert not kept(match, ethernet(ipv4("10.240.0.1", NODE_A, ICMP, icmp_error(3, 4, other, mtu=1400, quote=len(other)))))
    headers = parse_headers(error, 14, 8472)
    assert headers is not None and headers.icmp and headers.encapsulated
    assert (headers.icmp_type, headers.icmp_code, headers.icmp_mtu, headers.vni) == (3, 4, 1400, 1)
    assert (headers.outer_src_ip, headers.outer_dst_ip) == (NODE_A, NODE_B)  # the quoted VXLAN packet's
    assert (headers.src_ip, headers.dst_ip, headers.src_port, headers.dst_port) == (POD, VIP, MARK, 8080)


def test_an_interface_without_a_link_header_gets_a_program_reading_from_the_ip_header() -> None:
    assert kept(spec(), ipv4(POD, VIP, TCP, tcp(MARK, 8080)), link_header=0)
    assert not kept(spec(), ipv4(POD, VIP, TCP, tcp(MARK, 8080)), link_header=14)


def test_a_tcp_syn_is_parsed_as_tcpdump_shows_it() -> None:
    headers = parse_headers(ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080), ttl=63)), 14, None)
    assert headers is not None
    assert (headers.protocol, headers.src_ip, headers.dst_ip, headers.src_port, headers.dst_port) == (TCP, POD, VIP, MARK, 8080)
    assert (headers.tcp_flags, headers.ttl, headers.dont_fragment, headers.encapsulated) == ("S", 63, True, False)


@pytest.mark.parametrize(
    ("flags", "letters"), [(SYN, "S"), (SYN | ACK, "S."), (RST | ACK, "R."), (0x11, "F."), (0x18, "P."), (0, "none")]
)
def test_tcp_flags_use_tcpdumps_letters_and_order(flags: int, letters: str) -> None:
    assert tcp_flag_letters(flags) == letters


def test_a_vxlan_packet_gives_the_inner_tuple_the_outer_addresses_and_the_vni() -> None:
    inner = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080), ttl=63))
    headers = parse_headers(ethernet(vxlan(NODE_A, NODE_B, inner, vni=42)), 14, 8472)
    assert headers is not None and headers.encapsulated
    assert (headers.outer_src_ip, headers.outer_dst_ip, headers.vni) == (NODE_A, NODE_B, 42)
    assert (headers.src_ip, headers.dst_ip, headers.src_port, headers.dst_port, headers.ttl) == (POD, VIP, MARK, 8080, 63)
    plain = parse_headers(ethernet(vxlan(NODE_A, NODE_B, inner, vni=42)), 14, None)
    assert plain is not None and not plain.encapsulated and plain.dst_port == 8472  # no overlay named: plain UDP


def test_an_icmp_frag_needed_gives_its_mtu_and_the_quoted_packets_tuple() -> None:
    probe = ipv4(POD, VIP, UDP, udp(MARK, 53, b"x" * 1400))
    headers = parse_headers(ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(3, 4, probe, mtu=1400), df=False)), 14, 8472)
    assert headers is not None and headers.icmp
    assert (headers.protocol, headers.icmp_type, headers.icmp_code, headers.icmp_mtu) == (ICMP, 3, 4, 1400)
    assert (headers.src_ip, headers.dst_ip, headers.src_port, headers.dst_port) == (POD, VIP, MARK, 53)
    unreachable = parse_headers(ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(3, 3, probe))), 14, None)
    assert unreachable is not None and unreachable.icmp_mtu == 0 and unreachable.icmp_code == 3


def test_short_and_foreign_frames_never_raise() -> None:
    probe = ipv4(POD, VIP, UDP, udp(MARK, 53))
    frame = ethernet(vxlan(NODE_B, NODE_A, ethernet(ipv4(VIP, POD, ICMP, icmp_error(3, 3, probe)))))
    for end in range(len(frame) + 1):
        parse_headers(frame[:end], 14, 8472)
    assert parse_headers(ethernet(b"\x60" + b"\x00" * 39, ethertype=0x86DD), 14, None) is None
    assert parse_headers(ethernet(b"\x46" + b"\x00" * 19), 14, None) is None  # options claimed but absent
    assert parse_headers(struct.pack("!H", 0x0800), 14, None) is None
