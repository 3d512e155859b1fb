"""DNS probes from inside a namespace, resolving the way the pod's own resolver would.

The pod's resolv.conf is the one its containers see: `/etc/netns/<name>/resolv.conf` for a named
namespace that has one (what `ip netns exec` bind-mounts), else `/proc/<pid>/root/etc/resolv.conf`
of a process in the namespace. Its first nameserver, search list and `ndots` decide which fully
qualified names are tried, in the order glibc tries them. Queries go over UDP from a socket created
inside the namespace; the whole resolution has one hard timeout. Like glibc (`options timeout:5
attempts:2`), a query without an answer is sent once more on the same socket: half the budget per try,
so a lookup whose first datagram was lost is answered by its resend and says so (`retries`), the shape
of the UDP conntrack race a pod's resolver meets as 5-second lookups.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from nodeagent.checks.links import address_family
from nodeagent.checks.probe import ProbeOutcome, ProbeResult, classify_error, error_text
from nodeagent.errors import InvalidRequest, KernelQueryFailed
from nodeagent.netns import socket_in_netns

MAX_RESOLV_CONF_BYTES = 64 * 1024
DEFAULT_NDOTS = 1
MAX_SEARCH = 6
DNS_PORT = 53
ATTEMPTS = 2
"""Sends of one query (glibc's default `attempts:2`)."""


@dataclass(frozen=True)
class ResolverConfig:
    """The parts of a resolv.conf a probe applies."""

    path: str
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int


@dataclass(frozen=True)
class DnsProbeResult:
    """A DNS probe's outcome, the final rcode and answers, and what was tried."""

    probe: ProbeResult
    rcode: str | None
    answers: tuple[str, ...]
    server: str
    queried_names: tuple[str, ...]
    answered_name: str | None
    resolv_conf: str | None
    search: tuple[str, ...]
    ndots: int
    retries: int = 0
    """Queries sent again because no answer came within the per-try timeout."""


def parse_resolv_conf(text: str, path: str) -> ResolverConfig:
    """Parse nameserver, search/domain (the last one wins, as in glibc) and options ndots."""
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    ndots = DEFAULT_NDOTS
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key == "search":
            search = tuple(values[:MAX_SEARCH])
        elif key == "domain" and values:
            search = (values[0],)
        elif key == "options":
            for option in values:
                if option.startswith("ndots:"):
                    try:
                        ndots = max(0, min(15, int(option.split(":", 1)[1])))
                    except ValueError:
                        continue
    return ResolverConfig(path=path, nameservers=tuple(nameservers), search=search, ndots=ndots)


def resolv_conf_path(netns_name: str | None, pid: int | None) -> Path:
    """Where the resolv.conf that processes in this namespace see lives."""
    if netns_name is not None:
        named = Path("/etc/netns") / netns_name / "resolv.conf"
        if named.is_file():
            return named
    if pid is not None:
        return Path(f"/proc/{pid}/root/etc/resolv.conf")
    return Path("/etc/resolv.conf")


def read_resolver_config(path: Path) -> ResolverConfig:
    """Read and parse a resolv.conf; an unreadable file is a `KernelQueryFailed` naming it."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_RESOLV_CONF_BYTES).decode("utf-8", errors="replace")
    except OSError as exc:
        raise KernelQueryFailed(f"reading {path}", exc.errno, exc.strerror) from exc
    return parse_resolv_conf(text, str(path))


def candidate_names(name: str, search: tuple[str, ...], ndots: int) -> tuple[str, ...]:
    """The fully qualified names a stub resolver tries for `name`, in order."""
    if name.endswith("."):
        return (name,)
    absolute = name + "."
    searched = tuple(f"{name}.{domain.rstrip('.')}." for domain in search if domain.strip("."))
    if name.count(".") >= ndots:
        return (absolute, *searched)
    return (*searched, absolute)


def probe_dns(
    netns: str,
    name: str,
    record_type: str,
    timeout: float,
    server: str | None,
    resolver: ResolverConfig | None,
) -> DnsProbeResult:
    """Resolve `name` from `netns`: against `server` as given (absolute name), or via `resolver`."""
    try:
        rdtype = dns.rdatatype.from_text(record_type)
    except dns.rdatatype.UnknownRdatatype as exc:
        raise InvalidRequest(f"record_type {record_type!r} is not a DNS record type") from exc
    if server:
        names = candidate_names(name if name.endswith(".") else name + ".", (), 1)
        search: tuple[str, ...] = ()
        ndots = 0
    else:
        if resolver is None or not resolver.nameservers:
            where = resolver.path if resolver else "resolv.conf"
            raise KernelQueryFailed(f"{where} names no nameserver", None, "no nameserver configured")
        server = resolver.nameservers[0]
        names = candidate_names(name, resolver.search, resolver.ndots)
        search, ndots = resolver.search, resolver.ndots
    try:
        inode = os.stat(netns).st_ino
    except OSError as exc:
        raise KernelQueryFailed("opening the namespace", exc.errno, exc.strerror) from exc
    deadline = time.monotonic() + timeout
    start = time.monotonic()
    tried: list[str] = []
    rcode: str | None = None
    answers: tuple[str, ...] = ()
    answered: str | None = None
    failure: OSError | None = None
    retries = 0
    for fqdn in names:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failure = TimeoutError("timed out")
            break
        tried.append(fqdn)
        query = dns.message.make_query(fqdn, rdtype)
        try:
            sock = socket_in_netns(netns, address_family(server), socket.SOCK_DGRAM)
        except OSError as exc:
            raise KernelQueryFailed("opening a DNS socket in the namespace", exc.errno, exc.strerror) from exc
        try:
            with sock:
                # dnspython wants a non-blocking socket; connecting it makes an ICMP port unreachable
                # surface as ECONNREFUSED instead of a silent wait.
                sock.setblocking(False)
                sock.connect((server, DNS_PORT))
                response, resent = _ask_twice(query, server, sock, deadline, timeout / ATTEMPTS)
                retries += resent
        except dns.exception.Timeout:
            failure = TimeoutError("timed out")
            break
        except OSError as exc:
            failure = exc
            break
        except dns.exception.DNSException as exc:
            failure = OSError(0, f"bad DNS response: {exc}")
            break
        failure = None
        rcode = dns.rcode.to_text(response.rcode())
        answers = tuple(rdata.to_text() for rrset in response.answer for rdata in rrset)
        answered = fqdn
        if response.rcode() == dns.rcode.NXDOMAIN or (response.rcode() == dns.rcode.NOERROR and not answers):
            continue  # glibc goes on to the next candidate on NXDOMAIN and NODATA
        break
    elapsed = round((time.monotonic() - start) * 1000.0, 3)
    if failure is not None:
        # A candidate that times out or is refused ends the lookup as a failure, as glibc's does, even
        # when earlier candidates answered NXDOMAIN.
        probe = ProbeResult(classify_error(failure), elapsed, error_text(failure), inode)
        rcode, answers = None, ()
    else:
        probe = ProbeResult(ProbeOutcome.CONNECTED, elapsed, None, inode)
    if rcode is not None and not answers:
        answered = None
    return DnsProbeResult(
        probe=probe,
        rcode=rcode,
        answers=answers,
        server=server,
        queried_names=tuple(tried),
        answered_name=answered,
        resolv_conf=None if resolver is None else resolver.path,
        search=search,
        ndots=ndots,
        retries=retries,
    )


def _ask_twice(
    query: dns.message.Message, server: str, sock: socket.socket, deadline: float, per_try: float
) -> tuple[dns.message.Message, int]:
    """Send `query` on the connected socket and wait `per_try`; without an answer send it again and wait
    until `deadline`. Returns the answer and how many resends it took (a late answer to the first send
    is accepted, as glibc accepts it). Raises `dns.exception.Timeout` when neither is answered."""
    try:
        wait = min(per_try, deadline - time.monotonic())
        return dns.query.udp(query, server, timeout=max(wait, 0.0), port=DNS_PORT, sock=sock), 0
    except dns.exception.Timeout:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise
    return dns.query.udp(query, server, timeout=remaining, port=DNS_PORT, sock=sock), 1
