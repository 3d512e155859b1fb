"""Entering network namespaces safely from a multi-threaded server.

`setns(2)` for a network namespace changes only the calling thread. We never switch the server's
own threads: work that must happen inside a namespace runs on a short-lived thread that enters the
namespace, does the work and ends. A socket created there stays bound to that namespace for its
whole life, so netlink and probe sockets can be opened in a namespace and used from anywhere.

Namespaces are only opened, never created: a wrong name is `NamespaceNotFound`, not a new namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

NETNS_RUN_DIR = Path("/var/run/netns")
CLONE_NEWNET = 0x40000000
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class NamespaceNotFound(LookupError):
    """The named network namespace does not exist."""


class InvalidNamespaceName(ValueError):
    """The name cannot be a namespace under /var/run/netns (path separators, dots-only, too long...)."""


def validate_netns_name(name: str) -> str:
    """Return `name` if it is a plain namespace name that cannot escape /var/run/netns."""
    if not _NETNS_NAME.fullmatch(name) or name in {".", ".."} or "/" in name:
        raise InvalidNamespaceName(f"not a network namespace name: {name[:64]!r}")
    return name


def netns_path(name: str | None) -> str:
    """The path of a named namespace, or of this process's own namespace when `name` is None."""
    if name is None:
        return "/proc/self/ns/net"
    path = NETNS_RUN_DIR / validate_netns_name(name)
    if not path.exists():
        raise NamespaceNotFound(f"network namespace {name!r} does not exist")
    return str(path)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread that has entered the namespace at `path`; return its result.

    The calling thread's namespace never changes. Exceptions raised by `fn` are re-raised here.
    """
    if path == "/proc/self/ns/net":
        return fn()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            _setns(fd)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - carried to the caller thread and re-raised there
            error.append(exc)

    try:
        thread = threading.Thread(target=worker, name="netns-worker", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if error:
        raise error[0]
    return result[0]


def socket_in_netns(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """Open a socket inside the namespace at `path`; it stays bound to that namespace."""
    return run_in_netns(path, lambda: socket.socket(family, kind, proto))


def netns_inode(path: str) -> int:
    """The inode that identifies a network namespace (what `ls -L -i` and /proc/*/ns/net show)."""
    return os.stat(path).st_ino
