"""A classic BPF program compiled from a validated `CaptureMatchSpec` (never from request text).

The program runs in the kernel on every packet of the watched interface and keeps the probe's:
its protocol with the marked port as source or destination port and an address of the set on either
side; the same packet inside VXLAN (outer UDP to or from the overlay port, optionally one VNI);
and ICMP errors (unreachable, time exceeded) quoting such a packet, bare or inside VXLAN, or quoting
the VXLAN packet that carried it (an error from the underlay, such as a frag-needed for the outer
packet: Linux quotes up to 576 bytes, enough for the inner headers). A kept
packet is cut to `SNAPLEN` bytes (headers only); every other packet costs the kernel a few loads
and never reaches the agent.

The program is built from alternatives, each ending in its own `ret` so every jump stays short
(classic BPF jumps are forward and at most 255 instructions). `X` holds the variable part of an
offset: the outer IP header's length, then the inner one's.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass, field

from nodeagent.checks.capture.model import IPPROTO_ICMP, IPPROTO_UDP, CaptureMatchSpec

SNAPLEN = 256
"""Bytes kept of a matching packet: Ethernet, outer IPv4 with options, UDP, VXLAN, inner Ethernet,
inner IPv4 with options and TCP with options all fit."""
ETH_HLEN = 14
ETHERTYPE_IPV4 = 0x0800
VXLAN_INNER_IP = 8 + 8 + ETH_HLEN  # UDP header, VXLAN header, inner Ethernet header
ICMP_QUOTE = 8  # the ICMP error header before the quoted IP header
ICMP_ERROR_TYPES = (3, 11)  # destination unreachable, time exceeded
SO_ATTACH_FILTER = 26
MAX_JUMP = 255

# classic BPF opcodes (linux/filter.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LD_W_IND, LD_H_IND, LD_B_IND = 0x40, 0x48, 0x50
LDX_IMM = 0x01
ALU_AND_K, ALU_LSH_K, ALU_RSH_K, ALU_ADD_X = 0x54, 0x64, 0x74, 0x0C
JMP_JEQ_K, JMP_JSET_K = 0x15, 0x45
RET_K = 0x06
MISC_TAX = 0x07

Instruction = tuple[int, int, int, int]
"""(code, jt, jf, k) as in `struct sock_filter`."""


class FilterTooLong(ValueError):
    """A jump would span more than classic BPF allows (cannot happen within the validated bounds)."""


@dataclass
class _Assembler:
    """Instructions with symbolic forward jump targets, resolved by `assemble`."""

    code: list[tuple[int, str | None, str | None, int]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    serial: int = 0

    def new_label(self, stem: str) -> str:
        self.serial += 1
        return f"{stem}{self.serial}"

    def mark(self, label: str) -> None:
        self.labels[label] = len(self.code)

    def op(self, code: int, k: int = 0) -> None:
        self.code.append((code, None, None, k))

    def jump(self, code: int, k: int, true: str | None, false: str | None) -> None:
        """A conditional jump; None means "the next instruction"."""
        self.code.append((code, true, false, k))

    def assemble(self) -> list[Instruction]:
        out: list[Instruction] = []
        for index, (code, true, false, k) in enumerate(self.code):
            out.append((code, self._offset(index, true), self._offset(index, false), k & 0xFFFFFFFF))
        return out

    def _offset(self, index: int, label: str | None) -> int:
        if label is None:
            return 0
        distance = self.labels[label] - index - 1
        if not 0 <= distance <= MAX_JUMP:
            raise FilterTooLong(f"a jump of {distance} instructions does not fit classic BPF")
        return distance


def _tuple_match(asm: _Assembler, spec: CaptureMatchSpec, base: int, fail: str) -> None:
    """Keep the packet when the IPv4 header at `base + X` is the probe's (protocol, an address of the set
    on either side, the port on either side, first fragment); else jump to `fail`."""
    asm.op(LD_B_IND, base + 9)
    asm.jump(JMP_JEQ_K, spec.protocol, None, fail)
    asm.op(LD_H_IND, base + 6)
    asm.jump(JMP_JSET_K, 0x1FFF, fail, None)  # a later fragment carries no ports
    address_ok = asm.new_label("addr")
    for offset, last_side in ((base + 12, False), (base + 16, True)):
        asm.op(LD_W_IND, offset)
        for i, address in enumerate(spec.addresses):
            last = last_side and i == len(spec.addresses) - 1
            asm.jump(JMP_JEQ_K, address, address_ok, fail if last else None)
    asm.mark(address_ok)
    # X += this header's length: the transport header is at base + X
    asm.op(LD_B_IND, base)
    asm.op(ALU_AND_K, 0x0F)
    asm.op(ALU_LSH_K, 2)
    asm.op(ALU_ADD_X)
    asm.op(MISC_TAX)
    keep = asm.new_label("keep")
    asm.op(LD_H_IND, base)
    asm.jump(JMP_JEQ_K, spec.port, keep, None)
    asm.op(LD_H_IND, base + 2)
    asm.jump(JMP_JEQ_K, spec.port, keep, fail)
    asm.mark(keep)
    asm.op(RET_K, SNAPLEN)


def _icmp_error(asm: _Assembler, base: int, fail: str) -> None:
    """The IPv4 header at `base + X` carries an ICMP error: X moves past it; else jump to `fail`."""
    asm.op(LD_B_IND, base + 9)
    asm.jump(JMP_JEQ_K, IPPROTO_ICMP, None, fail)
    asm.op(LD_B_IND, base)
    asm.op(ALU_AND_K, 0x0F)
    asm.op(ALU_LSH_K, 2)
    asm.op(ALU_ADD_X)
    asm.op(MISC_TAX)
    asm.op(LD_B_IND, base)
    is_error = asm.new_label("icmperr")
    asm.jump(JMP_JEQ_K, ICMP_ERROR_TYPES[0], is_error, None)
    asm.jump(JMP_JEQ_K, ICMP_ERROR_TYPES[1], is_error, fail)
    asm.mark(is_error)


def _vxlan(asm: _Assembler, spec: CaptureMatchSpec, base: int, fail: str) -> None:
    """The IPv4 header at `base + X` is VXLAN to or from the overlay port (and the VNI) carrying IPv4:
    X moves past it, so the inner IP header is at base + VXLAN_INNER_IP + X; else jump to `fail`."""
    assert spec.overlay_udp_port is not None
    asm.op(LD_B_IND, base + 9)
    asm.jump(JMP_JEQ_K, IPPROTO_UDP, None, fail)
    asm.op(LD_H_IND, base + 6)
    asm.jump(JMP_JSET_K, 0x1FFF, fail, None)
    asm.op(LD_B_IND, base)
    asm.op(ALU_AND_K, 0x0F)
    asm.op(ALU_LSH_K, 2)
    asm.op(ALU_ADD_X)
    asm.op(MISC_TAX)
    overlay = asm.new_label("overlay")
    asm.op(LD_H_IND, base)
    asm.jump(JMP_JEQ_K, spec.overlay_udp_port, overlay, None)
    asm.op(LD_H_IND, base + 2)
    asm.jump(JMP_JEQ_K, spec.overlay_udp_port, overlay, fail)
    asm.mark(overlay)
    if spec.vni is not None:
        asm.op(LD_W_IND, base + 8 + 4)  # VNI (24 bits) and a reserved byte
        asm.op(ALU_RSH_K, 8)
        asm.jump(JMP_JEQ_K, spec.vni, None, fail)
    asm.op(LD_H_IND, base + 8 + 8 + 12)  # the inner Ethernet type
    asm.jump(JMP_JEQ_K, ETHERTYPE_IPV4, None, fail)


def compile_filter(spec: CaptureMatchSpec, link_header: int) -> list[Instruction]:
    """The filter for packets whose IPv4 header starts `link_header` bytes in (14 on Ethernet, 0 on
    interfaces without a link header)."""
    asm = _Assembler()
    reject = "reject"
    is_ipv4 = asm.new_label("ipv4")
    if link_header == ETH_HLEN:
        asm.op(LD_H_ABS, 12)
        asm.jump(JMP_JEQ_K, ETHERTYPE_IPV4, is_ipv4, None)
    else:
        asm.op(LD_B_ABS, link_header)
        asm.op(ALU_AND_K, 0xF0)
        asm.jump(JMP_JEQ_K, 0x40, is_ipv4, None)
    asm.op(RET_K, 0)  # here, not at the end: the end may be further than a jump reaches
    asm.mark(is_ipv4)
    alternatives = ["direct"]
    if spec.icmp:
        alternatives.append("icmp")
    if spec.overlay_udp_port is not None:
        alternatives.append("vxlan")
        if spec.icmp:
            alternatives += ["vxlan-icmp", "icmp-vxlan"]
    for i, kind in enumerate(alternatives):
        fail = reject if i == len(alternatives) - 1 else f"alt{i + 1}"
        if i:
            asm.mark(f"alt{i}")
        asm.op(LDX_IMM, 0)
        _alternative(asm, spec, kind, link_header, fail)
    asm.mark(reject)
    asm.op(RET_K, 0)
    return asm.assemble()


def _alternative(asm: _Assembler, spec: CaptureMatchSpec, kind: str, link: int, fail: str) -> None:
    """One way a packet can carry the probe: bare, an ICMP error quoting it, inside VXLAN, an ICMP error
    inside VXLAN, or an ICMP error quoting the VXLAN packet that carried it (an underlay error)."""
    if kind == "direct":
        _tuple_match(asm, spec, link, fail)
    elif kind == "icmp":
        _icmp_error(asm, link, fail)
        _tuple_match(asm, spec, link + ICMP_QUOTE, fail)
    elif kind == "vxlan":
        _vxlan(asm, spec, link, fail)
        _tuple_match(asm, spec, link + VXLAN_INNER_IP, fail)
    elif kind == "vxlan-icmp":
        _vxlan(asm, spec, link, fail)
        _icmp_error(asm, link + VXLAN_INNER_IP, fail)
        _tuple_match(asm, spec, link + VXLAN_INNER_IP + ICMP_QUOTE, fail)
    else:
        _icmp_error(asm, link, fail)
        _vxlan(asm, spec, link + ICMP_QUOTE, fail)
        _tuple_match(asm, spec, link + ICMP_QUOTE + VXLAN_INNER_IP, fail)


def attach_filter(sock: socket.socket, program: list[Instruction]) -> None:
    """SO_ATTACH_FILTER: the kernel checks the program and runs it on every packet of the socket."""
    raw = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))  # struct sock_fprog, native layout
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
