"""Read one written reference (``svc/api:8080``, ``shop/deploy/web``, ``api.shop.svc.cluster.local``,
``[fd00::1]:443/udp``) into its parts, checking names, addresses and ports as it goes.

Which role the reference plays (source or target) is decided by the grammar; `to_ref` then applies
the one rule that depends on it: a bare ``name.namespace`` is a service (the DNS shorthand) as a
target and a workload as a source.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv6Address

from bot.parse.errors import Unreadable, shown
from bot.parse.models import OUTSIDE_NAME, EntryKind, Protocol, Ref, RefKind
from bot.parse.slack_text import url_address
from bot.parse.vocabulary import KIND_PREFIXES, PROTOCOL_WORDS, RESERVED

MIN_PORT = 1
MAX_PORT = 65535

_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_PORT_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_DOTTED_NUMBERS = re.compile(r"[0-9]+(?:\.[0-9]+)+", re.ASCII)
_NETWORK_RANGE = re.compile(r"[0-9a-f.:]+/[0-9]{1,3}", re.ASCII)
_PROTOCOL_SUFFIX = re.compile(r"(.*)/(tcp|udp|sctp)", re.ASCII | re.DOTALL)
_BRACKETED = re.compile(r"\[([^\[\]]*)\](?::(.*))?", re.DOTALL)
_POD_ADDRESS_LABEL = re.compile(r"[0-9a-f-]+", re.ASCII)
_PORT_NUMBER = re.compile(r"[0-9]+(?:/(?:tcp|udp|sctp))?|(?:tcp|udp|sctp)/[0-9]+", re.ASCII)
_NODE_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)

_NAME_RULE = "use lowercase letters, digits and '-', starting and ending with a letter or digit"
MAX_LABEL = 63
MAX_DNS_NAME = 253
MAX_PORT_NAME = 15
CLUSTER_DOMAIN = "cluster.local"


class Shape(Enum):
    """How a reference was written, which decides its kind when no kind was given."""

    NAME = "name"
    """``web`` or ``shop/web``: a workload of unknown kind."""
    SHORTHAND = "shorthand"
    """``api.shop``: a service in its namespace as a target, a workload as a source."""
    SERVICE_DNS = "service-dns"
    """``api.shop.svc`` / ``api.shop.svc.cluster.local``."""
    POD_DNS = "pod-dns"
    """``redis-0.redis.shop.svc.cluster.local``: a pod behind a headless service."""
    POD_ADDRESS_DNS = "pod-address-dns"
    """``10-244-1-5.shop.pod.cluster.local``: a pod IP written as a name."""
    EXTERNAL_DNS = "external-dns"
    """``api.stripe.com``: a name outside the cluster's service and pod names."""
    ADDRESS = "address"
    """An IPv4 or IPv6 literal."""
    OUTSIDE = "outside"
    """``outside``, ``the internet``, ``clients``: a client outside the cluster."""
    NODEPORT = "nodeport"
    """``nodeport 30080``: a NodePort by its number, its service to be found."""


@dataclass(frozen=True)
class PortSpec:
    """A port as written: a number or a name, and the protocol written with it."""

    number: int | None = None
    name: str | None = None
    protocol: Protocol | None = None


@dataclass(frozen=True)
class ReferenceText:
    """One reference read from text, before its role is known."""

    written: str
    shape: Shape
    name: str
    kind: RefKind | None = None
    namespace: str | None = None
    dns_name: str | None = None
    service: str | None = None
    cluster_domain: str | None = None
    address: IPv4Address | IPv6Address | None = None
    port: PortSpec | None = None
    port_problem: Unreadable | None = None
    """A port written on the reference that could not be read (the rest of the reference could)."""
    entry: EntryKind | None = None
    node_port: int | None = None
    entry_node: str | None = None

    def to_ref(self, *, as_source: bool) -> Ref:
        """The reference with its kind settled for the role it plays.

        With an entry (``web's load balancer``) a name is a service: only services have NodePorts,
        external IPs and load balancers.
        """
        shape_kind = _SHAPE_KINDS[self.shape]
        if self.entry is not None and self.kind in (None, RefKind.WORKLOAD) and shape_kind in (RefKind.WORKLOAD, RefKind.SERVICE):
            return self._entry_ref(
                Ref(RefKind.SERVICE, self.name, self.namespace, self.dns_name, cluster_domain=self.cluster_domain)
            )
        if self.kind is not None and self.kind is not shape_kind:
            # An explicit kind wins over what the DNS form implies; the name then stands on its own.
            return self._entry_ref(Ref(self.kind, self.name, self.namespace))
        if self.kind is None and self.shape is Shape.SHORTHAND and as_source:
            return Ref(RefKind.WORKLOAD, self.name, self.namespace)
        return Ref(
            kind=shape_kind,
            name=self.name,
            namespace=self.namespace,
            dns_name=self.dns_name,
            service=self.service,
            cluster_domain=self.cluster_domain,
            address=self.address,
            entry=self.entry,
            node_port=self.node_port,
            entry_node=self.entry_node,
        )

    def _entry_ref(self, ref: Ref) -> Ref:
        return dataclasses.replace(ref, entry=self.entry, node_port=self.node_port, entry_node=self.entry_node)


_SHAPE_KINDS: dict[Shape, RefKind] = {
    Shape.NAME: RefKind.WORKLOAD,
    Shape.SHORTHAND: RefKind.SERVICE,
    Shape.SERVICE_DNS: RefKind.SERVICE,
    Shape.POD_DNS: RefKind.POD,
    Shape.POD_ADDRESS_DNS: RefKind.IP,
    Shape.EXTERNAL_DNS: RefKind.DNS,
    Shape.ADDRESS: RefKind.IP,
    Shape.OUTSIDE: RefKind.OUTSIDE,
    Shape.NODEPORT: RefKind.NODEPORT,
}

OUTSIDE_READING = ReferenceText(written=OUTSIDE_NAME, shape=Shape.OUTSIDE, name=OUTSIDE_NAME)
"""The one reading of a client outside the cluster."""


def is_label(text: str) -> bool:
    """Whether `text` is a valid DNS-1123 label: a Kubernetes name or namespace."""
    return _LABEL.fullmatch(text) is not None


def check_label(text: str, what: str) -> str:
    """Return `text` if it is a valid DNS-1123 label (a Kubernetes name), else raise `Unreadable`."""
    if len(text) > MAX_LABEL and is_label(text[:MAX_LABEL]):
        raise Unreadable(f"The {what} '{shown(text)}' is longer than {MAX_LABEL} characters.", text)
    if not is_label(text):
        raise Unreadable(f"'{shown(text)}' is not a valid {what}: {_NAME_RULE}.", text)
    return text


def read_port(text: str, *, allow_protocol: bool = True) -> PortSpec:
    """Read ``8080``, ``http``, ``53/udp`` or ``udp/53`` as a port; raise `Unreadable` otherwise."""
    protocol: Protocol | None = None
    if allow_protocol and "/" in text:
        first, _, second = text.partition("/")
        if second in PROTOCOL_WORDS:
            protocol, text = PROTOCOL_WORDS[second], first
        elif first in PROTOCOL_WORDS:
            protocol, text = PROTOCOL_WORDS[first], second
    if _DIGITS.fullmatch(text):
        number = int(text) if len(text) <= 6 else MAX_PORT + 1
        if not MIN_PORT <= number <= MAX_PORT:
            raise Unreadable(f"Port {shown(text)} is out of range: ports are {MIN_PORT}–{MAX_PORT}.", text)
        return PortSpec(number=number, protocol=protocol)
    if len(text) <= MAX_PORT_NAME and _PORT_NAME.fullmatch(text) and "--" not in text and any(char.isalpha() for char in text):
        return PortSpec(name=text, protocol=protocol)
    raise Unreadable(
        f"'{shown(text)}' is not a port: write a number from {MIN_PORT} to {MAX_PORT} or a port name "
        f"(up to {MAX_PORT_NAME} lowercase letters, digits and '-', such as http).",
        text,
    )


def is_port_number(word: str) -> bool:
    """Whether a word is written as a port number, alone or with its protocol (``8080``, ``53/udp``,
    ``udp/53``); `read_port` then says whether the number is in range."""
    return _PORT_NUMBER.fullmatch(word) is not None


def is_node_name(word: str) -> bool:
    """Whether a word after ``on`` can name a node: a DNS name with a letter, or an IP address."""
    if word in RESERVED or _DIGITS.fullmatch(word):
        return False
    if _NODE_NAME.fullmatch(word) and any(char.isalpha() for char in word):
        return True
    return _ip_address(word) is not None


def _ip_address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def read_reference(word: str, *, kind: RefKind | None = None) -> ReferenceText:
    """Read one written reference; raise `Unreadable` naming the part that is wrong.

    `kind` is a kind given by a separate word (``pod web``, ``the api service``); it must agree with a
    kind written in the reference itself.
    """
    text = url_address(word) if "://" in word else word
    protocol: Protocol | None = None
    suffix = _PROTOCOL_SUFFIX.fullmatch(text)
    if suffix is not None and suffix.group(1) not in KIND_PREFIXES:  # "svc/udp" names a service called udp
        text, protocol = suffix.group(1), PROTOCOL_WORDS[suffix.group(2)]
    host, port_text = _split_port(text, word)
    port: PortSpec | None = PortSpec(protocol=protocol) if protocol is not None else None
    port_problem: Unreadable | None = None
    reference = _read_host(host, word, kind)
    if port_text:
        try:
            number_or_name = read_port(port_text, allow_protocol=False)
        except Unreadable as problem:
            port_problem = problem
        else:
            port = PortSpec(number=number_or_name.number, name=number_or_name.name, protocol=protocol)
    return ReferenceText(
        written=word,
        shape=reference.shape,
        name=reference.name,
        kind=reference.kind,
        namespace=reference.namespace,
        dns_name=reference.dns_name,
        service=reference.service,
        cluster_domain=reference.cluster_domain,
        address=reference.address,
        port=port,
        port_problem=port_problem,
    )


def _split_port(text: str, word: str) -> tuple[str, str | None]:
    if text.startswith("["):
        bracketed = _BRACKETED.fullmatch(text)
        if bracketed is None:
            raise Unreadable(f"Could not read '{shown(word)}': write an IPv6 address with a port as [fd00::1]:443.", word)
        return f"[{bracketed.group(1)}]", bracketed.group(2)
    if text.count(":") > 1:
        return text, None  # an IPv6 literal without a port; checked when the host is read
    host, colon, port = text.partition(":")
    return host, (port if colon else None)


def _read_host(host: str, word: str, given_kind: RefKind | None) -> ReferenceText:
    if host.startswith("["):
        address = _ip_address(host[1:-1])
        if not isinstance(address, IPv6Address):
            raise Unreadable(f"'{shown(host[1:-1])}' is not a valid IPv6 address.", word)
        return ReferenceText(written=word, shape=Shape.ADDRESS, name=str(address), address=address)
    if ":" in host:
        address = _ip_address(host)
        if address is None:
            raise Unreadable(
                f"'{shown(host)}' is neither an IP address nor NAME:PORT (write an IPv6 address with a port as [fd00::1]:443).",
                word,
            )
        return ReferenceText(written=word, shape=Shape.ADDRESS, name=str(address), address=address)
    if _NETWORK_RANGE.fullmatch(host):
        raise Unreadable(f"'{shown(host)}' is a network range: name one address or one workload.", word)
    parts = host.split("/")
    kind: RefKind | None = None
    namespace: str | None = None
    if len(parts) > 3 or any(not part for part in parts):
        raise Unreadable(f"Could not read '{shown(word)}': write NAME, KIND/NAME or NAMESPACE/KIND/NAME.", word)
    if len(parts) == 3:
        namespace = check_label(parts[0], "namespace")
        kind = _kind(parts[1], word)
    elif len(parts) == 2:
        if parts[0] in KIND_PREFIXES:
            kind = KIND_PREFIXES[parts[0]]
        else:
            namespace = check_label(parts[0], "namespace")
    if given_kind is not None:
        if kind is not None and kind is not given_kind:
            raise Unreadable(f"'{shown(word)}' is given two kinds ({given_kind} and {kind}): keep one.", word)
        kind = given_kind
    return _read_name(parts[-1], kind, namespace, word)


def _kind(text: str, word: str) -> RefKind:
    if text not in KIND_PREFIXES:
        raise Unreadable(
            f"'{shown(text)}' in '{shown(word)}' is not a kind: use pod, svc, deploy, sts, ds or node.",
            word,
        )
    return KIND_PREFIXES[text]


def _read_name(name: str, kind: RefKind | None, namespace: str | None, word: str) -> ReferenceText:
    address = _ip_address(name)
    if address is not None:
        return ReferenceText(written=word, shape=Shape.ADDRESS, name=str(address), address=address)
    if _DOTTED_NUMBERS.fullmatch(name):
        raise Unreadable(f"'{shown(name)}' is not a valid IP address.", word)
    if kind is RefKind.NODE:
        return ReferenceText(written=word, shape=Shape.NAME, name=_check_dns_name(name, "node name"), kind=kind)
    if kind is RefKind.NAMESPACE:
        if namespace is not None:
            raise Unreadable(f"'{shown(word)}' names a namespace inside a namespace: write ns/NAME.", word)
        return ReferenceText(written=word, shape=Shape.NAME, name=check_label(name, "namespace"), kind=kind)
    if "." not in name:
        return ReferenceText(written=word, shape=Shape.NAME, name=check_label(name, "name"), kind=kind, namespace=namespace)
    if namespace is not None:
        raise Unreadable(f"'{shown(word)}' names the namespace twice: write {namespace}/NAME or NAME.{namespace}.", word)
    return _read_dns_name(_check_dns_name(name, "DNS name"), kind, word)


def _check_dns_name(name: str, what: str) -> str:
    if len(name) > MAX_DNS_NAME:
        raise Unreadable(f"The {what} '{shown(name)}' is longer than {MAX_DNS_NAME} characters.", name)
    for label in name.split("."):
        if not label:
            raise Unreadable(f"'{shown(name)}' is not a valid {what}: it has an empty part between dots.", name)
        check_label(label, "name")
    return name


def _read_dns_name(name: str, kind: RefKind | None, word: str) -> ReferenceText:
    labels = name.split(".")
    if "svc" in labels[1:]:
        at = labels.index("svc", 1)
        domain = ".".join(labels[at + 1 :]) or None
        if at == 1:
            raise Unreadable(f"'{shown(name)}' has no namespace: write {labels[0]}.NAMESPACE.svc.cluster.local.", word)
        if at == 2:
            return ReferenceText(
                written=word,
                shape=Shape.SERVICE_DNS,
                name=labels[0],
                kind=kind,
                namespace=labels[1],
                dns_name=name,
                cluster_domain=domain,
            )
        if at == 3:
            return ReferenceText(
                written=word,
                shape=Shape.POD_DNS,
                name=labels[0],
                kind=kind,
                namespace=labels[2],
                dns_name=name,
                service=labels[1],
                cluster_domain=domain,
            )
    if len(labels) >= 3 and labels[2] == "pod" and _POD_ADDRESS_LABEL.fullmatch(labels[0]):
        dashed = labels[0]
        address = _ip_address(dashed.replace("-", ".")) or _ip_address(dashed.replace("-", ":"))
        if address is None:
            raise Unreadable(f"'{shown(dashed)}' in '{shown(name)}' is not a pod address (write 10-244-1-5).", word)
        return ReferenceText(
            written=word,
            shape=Shape.POD_ADDRESS_DNS,
            name=str(address),
            namespace=labels[1],
            dns_name=name,
            cluster_domain=".".join(labels[3:]) or None,
            address=address,
        )
    if len(labels) == 2:
        return ReferenceText(
            written=word,
            shape=Shape.SHORTHAND,
            name=labels[0],
            kind=kind,
            namespace=labels[1],
            dns_name=None if kind is not None else name,
        )
    if kind is not None:
        raise Unreadable(
            f"Could not read '{shown(word)}': after a kind, write NAME or NAME.NAMESPACE (or NAME.NAMESPACE.svc.cluster.local).",
            word,
        )
    if name.endswith(f".{CLUSTER_DOMAIN}"):
        # In the cluster domain, but neither a service nor a pod name: never a name outside the cluster.
        hint = f"{labels[0]}.{labels[1]}.svc.{CLUSTER_DOMAIN}" if len(labels) == 4 else f"NAME.NAMESPACE.svc.{CLUSTER_DOMAIN}"
        raise Unreadable(
            f"'{shown(name)}' is in the cluster domain but is not a service or pod name: write {hint}.",
            word,
        )
    return ReferenceText(written=word, shape=Shape.EXTERNAL_DNS, name=name, dns_name=name)
