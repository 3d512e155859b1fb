"""What a parsed question is: two references, a port and a protocol, as plain frozen data.

`bot.parse` fills these in from text; `bot.cluster` resolves them against the API. A `Ref` holds only
what the person wrote: a namespace is set when the text named one for that reference (``shop/api``,
``api.shop``, ``api.shop.svc.cluster.local``, ``api in shop``); a namespace said once for the whole
question (``-n shop``, or ``in shop, …`` before any name) is `Question.namespace`, and the resolver
applies it to every reference without its own. A reference with neither is looked up by the resolver
(the other name's namespace first, then the channel's default, then every namespace it may see).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
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
    OUTSIDE = "outside"
    """A client outside the cluster (``from outside``, ``the internet``, ``clients``): a source only."""
    NODEPORT = "nodeport"
    """A NodePort given by its number alone (``nodeport 30080 on node-2``): the resolver finds its service."""
    NAMESPACE = "namespace"
    """Every pod of a namespace (``pods in shop``, ``ns/shop``): a source only, sampled one per node."""

    @property
    def can_be_source(self) -> bool:
        """Whether traffic starts here itself: pods, workloads, nodes and IPs do; services and names do
        not (a service written as the source stands for the pods it selects: `sends_from_pods`)."""
        return self not in (RefKind.SERVICE, RefKind.DNS, RefKind.NODEPORT)

    @property
    def sends_from_pods(self) -> bool:
        """A service as the source: the question is asked from the pods it selects."""
        return self is RefKind.SERVICE

    @property
    def can_be_target(self) -> bool:
        """Whether traffic can end here: everything but a client outside the cluster, which has no
        address, and a whole namespace, which has none either."""
        return self not in (RefKind.OUTSIDE, RefKind.NAMESPACE)

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
    RefKind.OUTSIDE: "",
    RefKind.NODEPORT: "",
    RefKind.NAMESPACE: "ns",
}


class EntryKind(StrEnum):
    """How traffic from outside the cluster enters it, as a question names it (``web's load balancer``)."""

    NODEPORT = "nodeport"
    """A node's own IP and the service's NodePort."""
    EXTERNAL_IP = "external-ip"
    """One of the service's `spec.externalIPs`, on the service port."""
    LOAD_BALANCER = "load-balancer"
    """The service's load balancer ingress IP (`status.loadBalancer.ingress`), on the service port."""


OUTSIDE_NAME = "outside"
"""How a client outside the cluster is written back: ``outside → svc/web load-balancer``."""


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
    entry: EntryKind | None = None
    """The way in from outside the question names (``svc web's nodeport``, ``nodeport 30080``)."""
    node_port: int | None = None
    """The NodePort number written with a ``nodeport`` entry (``nodeport 30080``)."""
    entry_node: str | None = None
    """The receiving node written with an entry (``nodeport 30080 on node-2``): a node name or IP."""

    def display(self, port: str | None = None) -> str:
        """The reference in the form the grammar reads back, with ``:port`` appended when given.

        An entry is written after the reference as words (``shop/svc/web:80 load-balancer``,
        ``nodeport 30080 on node-2``), so that the canonical form reads as a person would say it.
        """
        text = EntryKind.NODEPORT.value if self.kind is RefKind.NODEPORT else self._plain(port)
        if self.entry is not None and self.kind is not RefKind.NODEPORT:
            text += f" {self.entry.value}"
        if self.node_port is not None:
            text += f" {self.node_port}"
        if self.entry_node is not None:
            text += f" on {self.entry_node}"
        if self.kind is RefKind.NODEPORT and self.namespace is not None:
            text += f" in {self.namespace}"
        return text

    def _plain(self, port: str | None) -> str:
        if self.kind is RefKind.OUTSIDE:
            text = OUTSIDE_NAME
        elif self.dns_name is not None:
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
    source_alternatives: tuple[Ref, ...] = field(default=(), compare=False)
    """Other bare words written on the source's side, nearest the connective first. The parser cannot
    tell which of several bare words is a name (``our checkout frontend can't reach api``); the
    resolver keeps the one word, `source` or one of these, that names something in the cluster."""
    target_alternatives: tuple[Ref, ...] = field(default=(), compare=False)
    """The same for the target (``frontend can't talk to redis, big replies hang``)."""

    def settled(self, role: str, ref: Ref, skipped: tuple[str, ...]) -> Question:
        """The question with one end chosen among its alternatives (by the resolver) and its canonical
        text written again; `skipped` joins the words skipped."""
        source = ref if role == "source" else self.source
        target = ref if role == "target" else self.target
        return dataclasses.replace(
            self,
            source=source,
            target=target,
            source_alternatives=() if role == "source" else self.source_alternatives,
            target_alternatives=() if role == "target" else self.target_alternatives,
            ignored=(*self.ignored, *skipped),
            normalized=canonical_text(
                source,
                target,
                port=self.port,
                port_name=self.port_name,
                protocol=self.protocol,
                namespace=self.namespace,
                trace=self.trace,
                intermittent=self.intermittent,
            ),
        )

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
        entry = isinstance(target, Ref) and (target.entry is not None or target.kind is RefKind.NODEPORT)
        text += f"/{protocol.lower()}" if port_text is not None and not entry else f" over {protocol.lower()}"
    if namespace is not None:
        text += f" -n {namespace}"
    return text


def canonical_text(
    source: Ref,
    target: Ref,
    *,
    port: int | None,
    port_name: str | None,
    protocol: Protocol | None,
    namespace: str | None,
    trace: bool,
    intermittent: bool,
) -> str:
    """A whole question in canonical form (`Question.normalized`), which parses back to the same question."""
    text = question_text(source, target, port=port, port_name=port_name, protocol=protocol, namespace=namespace)
    if trace:
        text = f"trace {text}"
    if intermittent:
        text = f"{text} intermittent"
    return text


def _ref_text(ref: Ref | str | None, port: str | None) -> str:
    if isinstance(ref, Ref):
        return ref.display(port)
    text = PLACEHOLDER if ref is None else ref
    return text if port is None else f"{text}:{port}"
