"""Request validation: every field is checked before any kernel work; failures are `InvalidRequest`.

Each function takes the raw value and the field's name, and returns the value in the form the
checks want (normalised IP text, `None` for "not given", seconds for timeouts).
"""

from __future__ import annotations

import ipaddress
import re

from nodeagent.errors import InvalidRequest
from nodeagent.netns import InvalidNamespaceName, validate_netns_name

MAX_STRING = 256
MAX_DNS_NAME = 253
MAX_INTERFACES = 16
MAX_CONNTRACK_LIMIT = 10_000
DEFAULT_CONNTRACK_LIMIT = 100
DEFAULT_TIMEOUT_MS = 2_000
MAX_TIMEOUT_MS = 10_000
MAX_UDP_PAYLOAD = 512
DNS_RECORD_TYPES = frozenset({"A", "AAAA", "SRV", "CNAME", "PTR", "TXT"})
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,14}$")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def bounded(value: str, field: str, limit: int = MAX_STRING) -> str:
    """`value` if it is at most `limit` characters."""
    if len(value) > limit:
        raise InvalidRequest(f"{field} is {len(value)} characters long; at most {limit} are allowed")
    return value


def ip_literal(value: str, field: str) -> str:
    """A required IPv4/IPv6 literal, normalised ("010.0.0.1" is rejected, as ipaddress does)."""
    bounded(value, field, 64)
    if not value:
        raise InvalidRequest(f"{field} is required (an IPv4 or IPv6 address)")
    if "%" in value:
        raise InvalidRequest(f"{field} {value[:64]!r} has a zone (%...): scoped IPv6 addresses are not supported")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidRequest(f"{field} {value[:64]!r} is not an IP address") from exc


def same_family(first: str | None, second: str | None, fields: str) -> None:
    """Both addresses (when given) are IPv4, or both IPv6: the kernel cannot mix them in one lookup."""
    if first is None or second is None:
        return
    if ipaddress.ip_address(first).version != ipaddress.ip_address(second).version:
        raise InvalidRequest(f"{fields} mix IPv4 and IPv6; give both in the same address family")


def optional_ip(value: str, field: str) -> str | None:
    """An IP literal, or None when empty."""
    return ip_literal(value, field) if value else None


def port(value: int, field: str = "port") -> int:
    """A required port, 1-65535."""
    if not 1 <= value <= 65535:
        raise InvalidRequest(f"{field} {value} is out of range; use 1-65535")
    return value


def optional_port(value: int, field: str) -> int | None:
    """A port, or None when 0 (meaning any)."""
    return None if value == 0 else port(value, field)


def timeout_seconds(value_ms: int, field: str = "timeout_ms") -> float:
    """A probe timeout: 0 means the default (2 s), else 1-10000 ms."""
    if value_ms == 0:
        return DEFAULT_TIMEOUT_MS / 1000.0
    if not 1 <= value_ms <= MAX_TIMEOUT_MS:
        raise InvalidRequest(f"{field} {value_ms} is out of range; use 1-{MAX_TIMEOUT_MS} (0 for {DEFAULT_TIMEOUT_MS})")
    return value_ms / 1000.0


def conntrack_limit(value: int) -> int:
    """A conntrack result limit: 0 means 100, else 1-10000."""
    if value == 0:
        return DEFAULT_CONNTRACK_LIMIT
    if not 1 <= value <= MAX_CONNTRACK_LIMIT:
        raise InvalidRequest(f"limit {value} is out of range; use 1-{MAX_CONNTRACK_LIMIT}")
    return value


def interface_name(value: str, field: str) -> str:
    """A Linux interface name (at most 15 characters, no '/', not '.' or '..')."""
    bounded(value, field, 64)
    if not _INTERFACE.fullmatch(value) or value in {".", ".."}:
        raise InvalidRequest(f"{field} {value[:64]!r} is not an interface name")
    return value


def interface_names(values: list[str], field: str) -> tuple[str, ...]:
    """A bounded list of interface names."""
    if len(values) > MAX_INTERFACES:
        raise InvalidRequest(f"{field} has {len(values)} entries; at most {MAX_INTERFACES} are allowed")
    return tuple(interface_name(v, field) for v in values)


def netns_name(value: str, field: str) -> str:
    """A namespace name that cannot escape /var/run/netns."""
    bounded(value, field)
    try:
        return validate_netns_name(value)
    except InvalidNamespaceName as exc:
        raise InvalidRequest(f"{field}: {exc}") from exc


def dns_name(value: str, field: str = "name") -> str:
    """A DNS name: at most 253 characters, labels of letters, digits, '-' and '_'."""
    bounded(value, field, MAX_STRING)
    if not value:
        raise InvalidRequest(f"{field} is required")
    stripped = value[:-1] if value.endswith(".") else value
    if len(stripped) > MAX_DNS_NAME or not all(_DNS_LABEL.fullmatch(label) for label in stripped.split(".")):
        raise InvalidRequest(f"{field} {value[:64]!r} is not a DNS name")
    return value


def record_type(value: str) -> str:
    """A DNS record type from the supported set; empty means "A"."""
    kind = (value or "A").upper()
    if kind not in DNS_RECORD_TYPES:
        raise InvalidRequest(f"record_type {value[:16]!r} is not supported; use one of {', '.join(sorted(DNS_RECORD_TYPES))}")
    return kind


def udp_payload(value: bytes) -> bytes:
    """A UDP probe payload of at most 512 bytes."""
    if len(value) > MAX_UDP_PAYLOAD:
        raise InvalidRequest(f"payload is {len(value)} bytes; at most {MAX_UDP_PAYLOAD} are allowed")
    return value


MIN_MARKED_PORT = 1024
MAX_DATAGRAM_SIZE = 8972
CAPTURE_DURATION_MS = (100, 5_000, 3_000)
CAPTURE_PACKETS = (1, 1_000, 200)
CAPTURE_BYTES = (1_024, 1_048_576, 262_144)
MAX_CAPTURE_POINTS = 16
MAX_CAPTURE_ADDRESSES = 32
MAX_VNI = (1 << 24) - 1


def marked_port(value: int, field: str) -> int:
    """A probe's marked source port: 1024-65535 (a port a capture can tell apart from services)."""
    if not MIN_MARKED_PORT <= value <= 65535:
        raise InvalidRequest(f"{field} {value} is out of range; use {MIN_MARKED_PORT}-65535")
    return value


def optional_marked_port(value: int, field: str) -> int | None:
    """A marked source port, or None when 0 (the kernel chooses)."""
    return None if value == 0 else marked_port(value, field)


def datagram_size(value: int) -> int | None:
    """A DF probe's UDP payload size: 1-8972 bytes, or None when 0 (no padding, no DF)."""
    if value == 0:
        return None
    if not 1 <= value <= MAX_DATAGRAM_SIZE:
        raise InvalidRequest(f"datagram_size {value} is out of range; use 1-{MAX_DATAGRAM_SIZE} (0 for a plain datagram)")
    return value


def bounded_count(value: int, field: str, bounds: tuple[int, int, int]) -> int:
    """A capture bound: `bounds` is (lowest, highest, default for 0)."""
    low, high, default = bounds
    if value == 0:
        return default
    if not low <= value <= high:
        raise InvalidRequest(f"{field} {value} is out of range; use {low}-{high} (0 for {default})")
    return value


def ipv4_addresses(values: list[str], field: str) -> tuple[str, ...]:
    """1-32 distinct IPv4 literals (the capture's filter compares 32-bit addresses)."""
    if not 1 <= len(values) <= MAX_CAPTURE_ADDRESSES:
        raise InvalidRequest(f"{field} has {len(values)} entries; give 1-{MAX_CAPTURE_ADDRESSES} IPv4 addresses")
    out: list[str] = []
    for value in values:
        address = ip_literal(value, field)
        if ipaddress.ip_address(address).version != 4:
            raise InvalidRequest(f"{field} {value[:64]!r} is IPv6; capture matches IPv4 only")
        if address not in out:
            out.append(address)
    return tuple(out)


def vni(value: int) -> int | None:
    """A VXLAN network identifier (1-16777215), or None when 0 (any)."""
    if value == 0:
        return None
    if not 1 <= value <= MAX_VNI:
        raise InvalidRequest(f"vni {value} is out of range; use 1-{MAX_VNI} (0 for any)")
    return value


def capture_point_count(count: int) -> None:
    """A capture set watches 1-16 points."""
    if not 1 <= count <= MAX_CAPTURE_POINTS:
        raise InvalidRequest(f"points has {count} entries; give 1-{MAX_CAPTURE_POINTS} points")
