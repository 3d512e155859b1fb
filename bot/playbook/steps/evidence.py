"""Evidence records and the explicit fields each observation contributes to them."""

from __future__ import annotations

from bot.playbook.models import Evidence, JSONValue
from bot.playbook.observations import Link, ListeningSocket, OverlayHop, RouteInfo


def ev(kind: str, summary: str, node: str | None = None, **data: JSONValue) -> Evidence:
    """One piece of evidence: what kind, its one-line summary, the node it was seen on, its data."""
    return Evidence(kind=kind, summary=summary, node=node, data=data)


def link_data(link: Link) -> dict[str, JSONValue]:
    return {
        "name": link.name,
        "index": link.index,
        "kind": link.kind,
        "mtu": link.mtu,
        "oper_state": link.oper_state,
        "admin_up": link.admin_up,
        "master": link.master,
        "addresses": link.addresses,
    }


def route_data(route: RouteInfo) -> dict[str, JSONValue]:
    return {
        "destination": route.destination,
        "gateway": route.gateway,
        "device": route.device,
        "source": route.source,
        "type": route.type,
    }


def overlay_hop_data(hop: OverlayHop) -> dict[str, JSONValue]:
    return {
        "device": hop.device,
        "device_up": hop.device_up,
        "next_hop": hop.next_hop,
        "neighbour_mac": hop.neighbour_mac,
        "neighbour_state": hop.neighbour_state,
        "fdb_remote": hop.fdb_remote,
    }


def socket_data(socket: ListeningSocket) -> dict[str, JSONValue]:
    return {
        "protocol": socket.protocol,
        "address": socket.address,
        "port": socket.port,
        "process": socket.process,
        "pid": socket.pid,
        "cgroup": socket.cgroup,
    }
