"""A pod's containers: real servers on each container port, run inside the pod's namespace.

Started by the lab as `ip netns exec POD-NETNS python -m lab.podserver …`, so it lives in the pod's
network namespace and sees the pod's resolv.conf. TCP ports greet with one line naming the pod and
then echo; UDP ports answer each datagram with the same line. Pods with the `dns` role answer DNS on
port 53 (UDP and TCP) from the zone file the lab keeps current and, like CoreDNS's `forward .`
plugin, pass every name outside their zone to the upstream resolver (`--upstream`): its answer is
relayed, and SERVFAIL is answered when it does not answer in time. The outside world's resolver runs
the same server with an authoritative zone: names it does not hold are NXDOMAIN.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any, cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DNS_TTL = 5
UPSTREAM_TIMEOUT_S = 2.0


class Zone:
    """The DNS zone, reloaded when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._data: dict[str, Any] = {"domain": "cluster.local.", "a": {}, "srv": {}, "ptr": {}}

    def data(self) -> dict[str, Any]:
        """The current zone (re-read when the file's mtime moved)."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return self._data
        if mtime != self._mtime:
            try:
                self._data = json.loads(self.path.read_text())
                self._mtime = mtime
            except (OSError, ValueError):
                pass
        return self._data


def needs_upstream(zone: Zone, wire: bytes) -> bool:
    """True when the query's name lies outside the zone and the zone is not authoritative for all."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return False
    if not query.question:
        return False
    data = zone.data()
    return not data.get("authoritative") and not _in_zone(query.question[0].name.to_text().lower(), data)


def _in_zone(name: str, data: dict[str, Any]) -> bool:
    domain = data["domain"]
    return name == domain or name.endswith("." + domain) or name.endswith(".in-addr.arpa.")


def forward_dns(wire: bytes, upstream: str, timeout: float = UPSTREAM_TIMEOUT_S, port: int = 53) -> bytes:
    """Relay a query to the upstream resolver over UDP; SERVFAIL when it does not answer in time."""
    query = dns.message.from_wire(wire)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(wire, (upstream, port))
            while True:
                reply, _ = sock.recvfrom(65535)
                if reply[:2] == wire[:2]:
                    return reply
        except OSError:
            pass
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


def answer_dns(zone: Zone, wire: bytes) -> bytes | None:
    """Answer one DNS query in wire format; None when it cannot be parsed at all."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    name = question.name.to_text().lower()
    data = zone.data()
    if not _in_zone(name, data):
        response.flags &= ~dns.flags.AA
        # Authoritative for everything (the outside resolver): the name does not exist. Otherwise
        # there is no upstream to ask.
        response.set_rcode(dns.rcode.NXDOMAIN if data.get("authoritative") else dns.rcode.SERVFAIL)
        return response.to_wire()
    cnames = data.get("cname", {})
    known = name in data["a"] or name in data["srv"] or name in data["ptr"] or name in cnames
    if name in cnames:
        response.answer.append(dns.rrset.from_text_list(name, DNS_TTL, "IN", "CNAME", [cnames[name]]))
    elif question.rdtype == dns.rdatatype.A and data["a"].get(name):
        response.answer.append(dns.rrset.from_text_list(name, DNS_TTL, "IN", "A", data["a"][name]))
    elif question.rdtype == dns.rdatatype.SRV and name in data["srv"]:
        texts = [f"{p} {w} {port} {target}" for p, w, port, target in data["srv"][name]]
        response.answer.append(dns.rrset.from_text_list(name, DNS_TTL, "IN", "SRV", texts))
    elif question.rdtype == dns.rdatatype.PTR and name in data["ptr"]:
        response.answer.append(dns.rrset.from_text_list(name, DNS_TTL, "IN", "PTR", [data["ptr"][name]]))
    elif not known and not _is_branch(name, data):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


def _is_branch(name: str, data: dict[str, Any]) -> bool:
    """Names like `shop.svc.cluster.local.` exist as branches: NOERROR with no data, not NXDOMAIN."""
    suffix = "." + name
    return any(key.endswith(suffix) for table in ("a", "srv", "cname") for key in data.get(table, {}))


async def resolve(zone: Zone, wire: bytes, upstream: str | None) -> bytes | None:
    """The reply to one query: from the zone, or relayed to the upstream resolver (in a thread). A
    CNAME of the zone to a name outside it is followed upstream and the target's records appended."""
    loop = asyncio.get_running_loop()
    if upstream and needs_upstream(zone, wire):
        return await loop.run_in_executor(None, forward_dns, wire, upstream)
    reply = answer_dns(zone, wire)
    if reply is None or not upstream:
        return reply
    response = dns.message.from_wire(reply)
    chased = [rrset for rrset in response.answer if rrset.rdtype == dns.rdatatype.CNAME]
    if not chased or not response.question or response.question[0].rdtype == dns.rdatatype.CNAME:
        return reply
    target = chased[-1][0].target
    follow = dns.message.make_query(target, response.question[0].rdtype)
    if not needs_upstream(zone, follow.to_wire()):
        return reply
    answer = dns.message.from_wire(await loop.run_in_executor(None, forward_dns, follow.to_wire(), upstream))
    response.answer.extend(answer.answer)
    response.set_rcode(answer.rcode())
    return response.to_wire()


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, banner: bytes, zone: Zone | None, upstream: str | None = None) -> None:
        self.banner, self.zone, self.upstream = banner, zone, upstream
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        if self.zone is None:
            self.transport.sendto(self.banner, addr)
            return
        task = asyncio.ensure_future(self._answer(self.zone, data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, zone: Zone, data: bytes, addr: tuple[str, int]) -> None:
        reply = await resolve(zone, data, self.upstream)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def _serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: bytes) -> None:
    try:
        writer.write(banner)
        await writer.drain()
        while data := await asyncio.wait_for(reader.read(4096), timeout=30):
            writer.write(data)
            await writer.drain()
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def _serve_dns_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, zone: Zone, upstream: str | None) -> None:
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), timeout=10)
            wire = await reader.readexactly(struct.unpack("!H", header)[0])
            reply = await resolve(zone, wire, upstream)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> None:
    zone = Zone(Path(args.dns_zone)) if args.dns_zone else None
    loop = asyncio.get_running_loop()
    closers: list[Any] = []
    for spec in args.listen:
        where, _, proto = spec.partition("/")
        host, _, port_text = where.rpartition(":")
        host = host or "0.0.0.0"
        port = int(port_text)
        banner = f"kubereach-lab {args.pod} {port}/{proto}\n".encode()
        dns_port = zone is not None and port == 53
        if proto == "UDP":
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Datagram, banner, zone if dns_port else None, args.upstream), local_addr=(host, port)
            )
            closers.append(transport)
        elif dns_port and zone is not None:
            dns_zone = zone
            server = await asyncio.start_server(
                functools.partial(_serve_dns_tcp, zone=dns_zone, upstream=args.upstream), host, port, reuse_address=True
            )
            closers.append(server)
        else:
            server = await asyncio.start_server(functools.partial(_serve_tcp, banner=banner), host, port, reuse_address=True)
            closers.append(server)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"ready\n")
        os.close(args.ready_fd)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for closer in closers:
        closer.close()


def main(argv: list[str] | None = None) -> None:
    """Run the pod's servers until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.podserver")
    parser.add_argument("--pod", required=True, help="namespace/name, for the greeting")
    parser.add_argument(
        "--listen", action="append", default=[], help="[ADDRESS:]PORT/PROTO, repeatable (ADDRESS: answer from that address only)"
    )
    parser.add_argument("--dns-zone", help="serve DNS on port 53 from this zone file")
    parser.add_argument("--upstream", help="forward names outside the zone to this resolver (IPv4)")
    parser.add_argument("--ready-fd", type=int, help="write 'ready' to this fd once listening")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except OSError as exc:
        print(f"podserver {args.pod}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
