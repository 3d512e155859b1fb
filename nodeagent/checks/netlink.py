"""The agent's one netlink codec: message and attribute framing, dumps, errors and done.

Every hand-written netlink client of the agent (sock_diag in `sockets`, ctnetlink and nf_tables in
`ctnetlink`, the nf_tables reader in `nat.nft_netlink`) frames its requests and reads its answers
through this module. It works on memoryviews with `struct.unpack_from` and builds no object per
attribute: the conntrack dump decodes hundreds of thousands of entries with it.

- `header` / `message` build a `struct nlmsghdr` and the message behind it;
- `attr` / `nest` / `string_attr` build attributes (4-byte aligned, NLA_F_NESTED for nests);
- `attrs` / `attr_map` read the attributes between two offsets (type without flags, payload);
- `messages` walks the messages of one received buffer; `receive` reads the answer to one request
  until NLMSG_DONE (or an NLMSG_ERROR ack), raising `NetlinkError` for a kernel error or for a dump
  the kernel says was interrupted by concurrent changes.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Iterator

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_DUMP_INTR = 0x10
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

NLMSG_HEADER = struct.Struct("=IHHII")
NLA_HEADER = struct.Struct("=HH")
_ERROR_CODE = struct.Struct("=i")
RECEIVE_CHUNK = 256 * 1024

_sequence = itertools.count(1)


class NetlinkError(RuntimeError):
    """The kernel refused or failed a netlink request (or the socket did)."""

    def __init__(self, message: str, error_number: int = 0) -> None:
        super().__init__(message)
        self.errno = error_number


def next_seq() -> int:
    """A fresh request sequence number (answers are matched to requests by it)."""
    return next(_sequence)


def align(length: int) -> int:
    """`length` rounded up to netlink's 4-byte alignment."""
    return (length + 3) & ~3


def header(length: int, msg_type: int, flags: int, seq: int, pid: int = 0) -> bytes:
    """A `struct nlmsghdr`."""
    return NLMSG_HEADER.pack(length, msg_type, flags, seq, pid)


def message(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    """One netlink message: nlmsghdr followed by `body` (family header and attributes)."""
    return header(NLMSG_HEADER.size + len(body), msg_type, flags, seq) + body


def attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def nest(kind: int, *parts: bytes) -> bytes:
    """A nested attribute holding `parts`."""
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def string_attr(kind: int, text: str) -> bytes:
    """A NUL-terminated string attribute."""
    return attr(kind, text.encode() + b"\0")


def attrs(buf: bytes | memoryview, pos: int, end: int) -> list[tuple[int, memoryview]]:
    """The attributes between `pos` and `end`, in order, as (type without flags, payload)."""
    view = memoryview(buf)
    unpack = NLA_HEADER.unpack_from
    found: list[tuple[int, memoryview]] = []
    while pos + 4 <= end:
        length, kind = unpack(view, pos)
        if length < 4:
            break
        found.append((kind & NLA_TYPE_MASK, view[pos + 4 : pos + length]))
        pos += (length + 3) & ~3
    return found


def attr_map(payload: bytes | memoryview) -> dict[int, memoryview]:
    """The attributes of a whole payload by type (the last one wins)."""
    return dict(attrs(payload, 0, len(payload)))


def string(payload: bytes | memoryview) -> str:
    """A string attribute's text (up to its NUL)."""
    return bytes(payload).split(b"\0", 1)[0].decode(errors="replace")


def error_code(buf: bytes | bytearray | memoryview, off: int) -> int:
    """The (positive) errno of the NLMSG_ERROR message at `off`; 0 for an ack."""
    return -int(_ERROR_CODE.unpack_from(buf, off + NLMSG_HEADER.size)[0])


def messages(buf: bytes | bytearray | memoryview, size: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(offset, end, msg_type, flags, seq) of every whole message in buf[:size]."""
    unpack = NLMSG_HEADER.unpack_from
    off = 0
    while off + 16 <= size:
        length, msg_type, flags, seq, _pid = unpack(buf, off)
        if length < 16:
            raise NetlinkError("malformed netlink message from the kernel", errno.EPROTO)
        yield (off, off + length, msg_type, flags, seq)
        off = (off + length + 3) & ~3


def send(sock: socket.socket, request: bytes) -> None:
    """Send one request; a socket error becomes `NetlinkError`."""
    try:
        sock.send(request)
    except OSError as exc:
        raise NetlinkError(f"netlink send failed: {exc.strerror}", exc.errno or 0) from exc


def receive(sock: socket.socket, seq: int) -> Iterator[tuple[memoryview, int, int, int]]:
    """Yield (buffer, offset, end, msg_type) for each message of the reply to `seq` until NLMSG_DONE.

    The buffer is reused between receives: a consumer must finish with a message before the next one.
    Raises NetlinkError when the kernel answers with an error, or when a dump was interrupted by
    concurrent changes (NLM_F_DUMP_INTR) so that its result would be inconsistent.
    """
    buf = bytearray(RECEIVE_CHUNK)
    view = memoryview(buf)
    unpack = NLMSG_HEADER.unpack_from
    interrupted = False
    while True:
        try:
            size = sock.recv_into(buf)
        except OSError as exc:
            raise NetlinkError(f"netlink receive failed: {exc.strerror}", exc.errno or 0) from exc
        off = 0
        # the loop of `messages`, inlined: this is the conntrack dump's hot path
        while off + 16 <= size:
            length, msg_type, flags, msg_seq, _pid = unpack(buf, off)
            if length < 16:
                raise NetlinkError("malformed netlink message from the kernel", errno.EPROTO)
            end = off + length
            if msg_seq != seq:
                off = (end + 3) & ~3
                continue
            if flags & NLM_F_DUMP_INTR:
                interrupted = True
            if msg_type == NLMSG_DONE:
                if interrupted:
                    raise NetlinkError("netlink dump interrupted by concurrent changes; retry", errno.EINTR)
                return
            if msg_type == NLMSG_ERROR:
                code = error_code(buf, off)
                if code == 0:
                    return
                raise NetlinkError(f"kernel answered: {os.strerror(code)}", code)
            yield (view, off, end, msg_type)
            off = (end + 3) & ~3


def dump(sock: socket.socket, request: bytes, seq: int) -> Iterator[tuple[memoryview, int, int, int]]:
    """Send `request` (numbered `seq`) and yield the messages of its answer, as `receive` does."""
    send(sock, request)
    yield from receive(sock, seq)
