"""A pod's containers: real servers on each container port, run inside the pod's namespace.

Started by the lab as `ip netns exec POD-NETNS python -m lab.podserver …`, so it lives in the pod's
network namespace and sees the pod's resolv.conf. TCP ports greet with one line naming the pod and
then echo; UDP ports answer each datagram with the same line. Pods with the `dns` role answer DNS on
port 53 (UDP and TCP) from the zone file the lab keeps current.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
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
    in_zone = name.endswith("." + data["domain"]) or name.endswith(".in-addr.arpa.")
    if not in_zone:
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.SERVFAIL)  # no upstream in the lab
        return response.to_wire()
    known = name in data["a"] or name in data["srv"] or name in data["ptr"]
    if question.rdtype == dns.rdatatype.A and data["a"].get(name):
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
    return any(key.endswith(suffix) for table in ("a", "srv") for key in data[table])


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, banner: bytes, zone: Zone | None) -> None:
        self.banner, self.zone = banner, zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        reply = answer_dns(self.zone, data) if self.zone is not None else self.banner
        if reply is not None:
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


async def _serve_dns_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, zone: Zone) -> None:
    try:
        while True:
            header = await asyncio.wait_for(reader.readexactly(2), timeout=10)
            wire = await reader.readexactly(struct.unpack("!H", header)[0])
            reply = answer_dns(zone, wire)
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
        port_text, _, proto = spec.partition("/")
        port = int(port_text)
        banner = f"kubereach-lab {args.pod} {port}/{proto}\n".encode()
        dns_port = zone is not None and port == 53
        if proto == "UDP":
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Datagram, banner, zone if dns_port else None), local_addr=("0.0.0.0", port)
            )
            closers.append(transport)
        elif dns_port and zone is not None:
            dns_zone = zone
            server = await asyncio.start_server(
                functools.partial(_serve_dns_tcp, zone=dns_zone), "0.0.0.0", port, reuse_address=True
            )
            closers.append(server)
        else:
            server = await asyncio.start_server(functools.partial(_serve_tcp, banner=banner), "0.0.0.0", port, reuse_address=True)
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
    parser.add_argument("--listen", action="append", default=[], help="PORT/PROTO, repeatable")
    parser.add_argument("--dns-zone", help="serve DNS on port 53 from this zone file")
    parser.add_argument("--ready-fd", type=int, help="write 'ready' to this fd once listening")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except OSError as exc:
        print(f"podserver {args.pod}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
