"""What a parsed question is: two references, a port and a protocol, as plain frozen data.

`bot.parse` fills these in from text; `bot.cluster` resolves them against the API. A `Ref` holds only
what the person wrote: a namespace is set when the text named one for that reference (``shop/api``,
``api.shop``, ``api.shop.svc.cluster.local``, ``api in shop``); a namespace said once for the whole
question (``-n shop``, or ``in shop, …`` before any name) is `Question.namespace`, and the resolver
applies it to every reference without its own. A reference with neither is looked up by the resolver
(the other name's namespace first, then the channel's default, then every namespace it may see).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address


class RefKind(StrEnum):
    """What kind of thing a reference names."""

    POD = "pod"
    SERVICE = "service"
    DEPLOYMENT = "deployment"
    STATEFULSET = "statefulset"
    DAEMONSET = "daemonset"
    WORKLOAD = "workload"
    """A bare name of unknown kind: the resolver decides (pod, deployment, service ...)."""
    NODE = "node"
    IP = "ip"
    DNS = "dns"
    """A DNS name that is not a cluster service or pod name (``api.stripe.com``)."""

    @property
    def can_be_source(self) -> bool:
        """Whether traffic can start here: pods, workloads, nodes and IPs can; services and names cannot."""
        return self not in (RefKind.SERVICE, RefKind.DNS)

    @property
    def prefix(self) -> str:
        """The short prefix used when writing the reference back (``svc/api``); empty for bare names."""
        return _PREFIXES[self]


_PREFIXES: dict[RefKind, str] = {
    RefKind.POD: "pod",
    RefKind.SERVICE: "svc",
    RefKind.DEPLOYMENT: "deploy",
    RefKind.STATEFULSET: "sts",
    RefKind.DAEMONSET: "ds",
    RefKind.WORKLOAD: "",
    RefKind.NODE: "node",
    RefKind.IP: "",
    RefKind.DNS: "",
}


class Protocol(StrEnum):
    """Transport protocol of the question; equal to the plain strings ``"TCP"``, ``"UDP"``, ``"SCTP"``."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@dataclass(frozen=True)
class Ref:
    """One end of a question, as written.

    `name` is the object's name; for `RefKind.IP` the address in canonical text, for `RefKind.DNS` the
    whole DNS name. When the reference was written as a DNS name, `dns_name` keeps it and the parsed
    parts are in `name`, `namespace`, `service` (the headless service of a pod name such as
    ``redis-0.redis.shop.svc.cluster.local``) and `cluster_domain` (``cluster.local``), and for the
    pod address form ``10-244-1-5.shop.pod.cluster.local`` the `address`.
    """

    kind: RefKind
    name: str
    namespace: str | None = None
    dns_name: str | None = None
    service: str | None = None
    cluster_domain: str | None = None
    address: IPv4Address | IPv6Address | None = None

    def display(self, port: str | None = None) -> str:
        """The reference in the form the grammar reads back, with ``:port`` appended when given."""
        if self.dns_name is not None:
            text = self.dns_name
        elif self.kind is RefKind.IP:
            text = self.name
            if port is not None and isinstance(self.address, IPv6Address):
                text = f"[{text}]"
        else:
            parts = [self.namespace] if self.namespace else []
            if self.kind.prefix:
                parts.append(self.kind.prefix)
            parts.append(self.name)
            text = "/".join(parts)
        return text if port is None else f"{text}:{port}"


@dataclass(frozen=True)
class Question:
    """A reachability question: can `source` reach `target` on this port and protocol?

    `port` and `port_name` are never both set; both None means "the target's ports" (the resolver
    picks). `protocol` None means the default applied later (TCP, or the service port's protocol).
    `namespace` is the namespace said once for both names. `raw` is the text as received; `normalized`
    the same question in canonical form (``pod/web → shop/svc/api:8080``, ``web → api -n shop``),
    which parses back to an equal question.
    """

    source: Ref
    target: Ref
    port: int | None
    port_name: str | None
    protocol: Protocol | None
    namespace: str | None
    raw: str
    normalized: str
    ignored: tuple[str, ...] = ()
    """Unknown words skipped because a marked reference stood beside them (``svc/api lately``)."""
    trace: bool = False
    """The question asks to follow the packet (``trace frontend → api:8080``)."""
    intermittent: bool = False
    """The question describes a failure that comes and goes (``flaky``, ``sometimes times out``)."""

    @property
    def trace_mode(self) -> str:
        """The trace the question asks for: "loss" (repeated probes), "path", or "" (none)."""
        return "loss" if self.intermittent else ("path" if self.trace else "")


PLACEHOLDER = "?"
"""Stands for a part the text did not give (or gave unreadably) in a closest form."""

ARROW = "→"


def question_text(
    source: Ref | str | None,
    target: Ref | str | None,
    *,
    port: int | str | None = None,
    port_name: str | None = None,
    protocol: Protocol | None = None,
    namespace: str | None = None,
) -> str:
    """Write a (possibly partial) question in canonical form; a missing part becomes ``?``.

    A string source or target is written as it is (used for placeholders such as ``pod/?``); `port`
    may be ``"?"`` to mark a port that was given but could not be read.
    """
    port_text = str(port) if port is not None else port_name
    source_text = _ref_text(source, None)
    target_text = _ref_text(target, port_text)
    text = f"{source_text} {ARROW} {target_text}"
    if protocol is not None:
        text += f"/{protocol.lower()}" if port_text is not None else f" over {protocol.lower()}"
    if namespace is not None:
        text += f" -n {namespace}"
    return text


def _ref_text(ref: Ref | str | None, port: str | None) -> str:
    if isinstance(ref, Ref):
        return ref.display(port)
    text = PLACEHOLDER if ref is None else ref
    return text if port is None else f"{text}:{port}"
