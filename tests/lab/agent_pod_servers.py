"""Tiny servers the agent lab tests run inside their pod namespaces (via `ip netns exec`).

    python -m tests.lab.agent_pod_servers echo TCP_PORT UDP_PORT   TCP accept-and-close + UDP echo
    python -m tests.lab.agent_pod_servers dns PORT NAME=IP...        UDP DNS: A records, NXDOMAIN else
                                                                   (~NAME=IP: the first query for NAME is dropped)

Each prints "ready" on stdout once its sockets are bound, then serves until killed.
"""

from __future__ import annotations

import selectors
import socket
import sys

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def serve_echo(tcp_port: int, udp_port: int) -> None:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", tcp_port))
    tcp.listen(16)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", udp_port))
    selector = selectors.DefaultSelector()
    selector.register(tcp, selectors.EVENT_READ)
    selector.register(udp, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is tcp:
                conn, _ = tcp.accept()
                conn.close()
            else:
                data, peer = udp.recvfrom(2048)
                udp.sendto(data, peer)


def serve_dns(port: int, records: dict[str, str]) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    lossy = {name.lstrip("~") for name in records if name.startswith("~")}
    records = {name.lstrip("~"): ip for name, ip in records.items()}
    print("ready", flush=True)
    while True:
        wire, peer = udp.recvfrom(4096)
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        if name in lossy:
            lossy.discard(name)  # lost on the way, as a datagram the conntrack race drops
            continue
        if name in records and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 30, "IN", "A", records[name]))
        elif name not in records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        udp.sendto(response.to_wire(), peer)


def main(argv: list[str]) -> None:
    if argv[0] == "echo":
        serve_echo(int(argv[1]), int(argv[2]))
    elif argv[0] == "dns":
        serve_dns(int(argv[1]), dict(item.split("=", 1) for item in argv[2:]))
    else:
        raise SystemExit(f"unknown server {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
