"""The agent's own errors. Checks raise these; the gRPC servicer maps each to one status code.

Foreign errors (pyroute2's NetlinkError, OSError from /proc and sockets) are converted into these at
the edge where they happen, so the servicer never needs to know about netlink.
"""

from __future__ import annotations

import errno as errno_codes
import os


class AgentError(Exception):
    """Base of every error the agent reports to a caller."""


class InvalidRequest(AgentError):
    """The request is malformed: answered INVALID_ARGUMENT with the reason."""


class PodNotFound(AgentError):
    """The IP is not a pod on this node: answered NOT_FOUND."""


class NamespaceUnknown(AgentError):
    """A namespace named in the request does not exist: answered NOT_FOUND."""


class NodeNamespaceMissing(AgentError):
    """The node's namespace (--host-netns) is gone: answered FAILED_PRECONDITION."""


class KernelQueryFailed(AgentError):
    """A netlink or /proc query failed; carries the errno so the caller sees the kernel's words."""

    def __init__(self, what: str, errno: int | None, detail: str | None = None) -> None:
        text = detail or (os.strerror(errno) if errno else "unknown error")
        name = errno_codes.errorcode.get(errno or 0, "")
        super().__init__(f"{what}: {text}" + (f" ({name})" if name else ""))
        self.errno = errno

    @property
    def transient(self) -> bool:
        """True when retrying may help (the kernel was busy or interrupted)."""
        return self.errno in {errno_codes.EBUSY, errno_codes.EAGAIN, errno_codes.EINTR, errno_codes.ENOBUFS}


class CheckUnavailable(AgentError):
    """A check this agent build does not provide (a module missing): answered UNIMPLEMENTED."""


class NoTimeLeft(AgentError):
    """A probe would start too late to finish within the caller's deadline: answered DEADLINE_EXCEEDED."""
