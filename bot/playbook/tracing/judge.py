"""What the captures of one trace say: which points saw the marked probe (request and reply), where
the packets stop, NAT seen on the wire, a reply that comes back on the wrong path, and — for
repeated probes — how many went missing and where.

The last point that saw the probe and the first that did not name the hop. A point whose node's
agent did not capture is "not checked": it is skipped, never read as "not seen".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.playbook.models import Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CapturedHeader, PointCapture, ProbeView
from bot.playbook.tracing.points import PathPoint, Role, Side, TracePath

REQUEST = "request"
REPLY = "reply"
ANSWERED = ("connected", "refused", "reset")
"""Probe outcomes that mean a reply came back (a refusal is an answer from the far end)."""


@dataclass(frozen=True)
class TraceRow:
    """One line of the trace table: one point, one direction."""

    point: PathPoint
    direction: str
    seen: bool | None
    """None: not checked (the point's agent did not capture, or the interface could not be opened)."""
    packets: int = 0
    first_seen_ms: float | None = None
    note: str = ""

    def document(self) -> dict[str, object]:
        """The row as `ask --json` prints it."""
        return {
            "node": self.point.node,
            "netns": self.point.netns,
            "interface": self.point.interface,
            "direction": self.direction,
            "seen": self.seen,
            "packets": self.packets,
            "first_seen_ms": self.first_seen_ms,
            "note": self.note,
        }


@dataclass(frozen=True)
class Stop:
    """Where packets stop: the last point that saw them and the first that did not."""

    direction: str
    last_seen: TraceRow | None
    first_unseen: TraceRow


@dataclass(frozen=True)
class Loss:
    """Repeated probes: how many were answered, where packets went missing, latency and retransmissions."""

    sent: int
    answered: int
    where: tuple[TraceRow, TraceRow] | None
    p50_ms: float | None
    p99_ms: float | None
    retransmits: int

    @property
    def rate(self) -> float:
        """The share of probes that got no answer."""
        return (self.sent - self.answered) / self.sent if self.sent else 0.0


@dataclass(frozen=True)
class Cause:
    """A verdict the trace names by itself."""

    code: C
    hop: Hop
    node: str
    summary: str
    facts: dict[str, str] = field(default_factory=dict)
    """What the remediation is filled from (nodes, port, protocol)."""


@dataclass(frozen=True)
class TraceReading:
    """Everything one trace says."""

    rows: tuple[TraceRow, ...]
    stop: Stop | None
    nat: tuple[str, ...] = ()
    asymmetric: str = ""
    loss: Loss | None = None
    cause: Cause | None = None
    unchecked: tuple[str, ...] = ()
    frag_needed_mtu: int = 0
    """The MTU an ICMP frag-needed quoting the probe announced (0: none seen)."""

    @property
    def reached(self) -> bool:
        """The request reached the destination pod."""
        last = [r for r in self.rows if r.direction == REQUEST]
        return bool(last) and last[-1].seen is True


def _direction(h: CapturedHeader, marked_port: int) -> str | None:
    if h.icmp:
        return REPLY  # an ICMP error quoting the probe comes back toward the source
    if h.src_port == marked_port:
        return REQUEST
    if h.dst_port == marked_port:
        return REPLY
    return None


def _rows(
    path: TracePath,
    captures: Sequence[PointCapture | None],
    marked_port: int,
    direction: str,
    unchecked: Mapping[str, str],
) -> list[TraceRow]:
    order = list(zip(path.points, captures, strict=True))
    if direction == REPLY:
        order.reverse()
    rows = []
    for point, capture in order:
        if capture is None or capture.error:
            why = unchecked.get(point.node, "the node's agent did not capture")
            note = f"not checked: {capture.error}" if capture is not None else f"not checked: {why}"
            rows.append(TraceRow(point, direction, None, note=note))
            continue
        mine = [h for h in capture.samples if _direction(h, marked_port) == direction]
        count = len(mine)
        if capture.packets > len(capture.samples) and mine:
            # samples are capped: scale the count of this direction by the share it had among the kept ones
            count = round(capture.packets * len(mine) / len(capture.samples))
        first = min((h.ts_ms for h in mine), default=None)
        rows.append(TraceRow(point, direction, count > 0, count, first, _note(point, mine)))
    return rows


def _note(point: PathPoint, headers: Sequence[CapturedHeader]) -> str:
    if not headers:
        return ""
    h = headers[0]
    parts = [f"{h.src_ip}:{h.src_port} → {h.dst_ip}:{h.dst_port}" if not h.icmp else f"ICMP {h.icmp_type}/{h.icmp_code}"]
    if h.icmp and h.icmp_mtu:
        parts.append(f"frag needed, MTU {h.icmp_mtu}")
    if h.tcp_flags:
        parts.append(f"[{h.tcp_flags}]")
    if h.encapsulated:
        parts.append(f"in VXLAN {h.outer_src_ip} → {h.outer_dst_ip}")
    return " ".join(parts)


def find_stop(rows: Sequence[TraceRow]) -> Stop | None:
    """The first point after which nothing saw the packets; None when the last point saw them.

    Not-checked points are skipped: a point is "the first that did not see" only when it was
    watched and no later watched point saw the packets either."""
    watched = [r for r in rows if r.seen is not None]
    if not watched or watched[-1].seen:
        return None
    index = len(watched) - 1
    while index > 0 and not watched[index - 1].seen:
        index -= 1
    return Stop(watched[0].direction, watched[index - 1] if index > 0 else None, watched[index])


def _nat(rows: Sequence[TraceRow], path: TracePath, captures: Sequence[PointCapture | None], marked_port: int) -> list[str]:
    """Address rewrites between consecutive points that saw the request (DNAT of a VIP, SNAT)."""
    by_point = dict(zip(path.points, captures, strict=True))
    seen: list[tuple[PathPoint, CapturedHeader]] = []
    for r in rows:
        capture = by_point[r.point]
        if not r.seen or capture is None:
            continue
        first = next((h for h in capture.samples if _direction(h, marked_port) == REQUEST), None)
        if first is not None:
            seen.append((r.point, first))
    found = []
    for (a, ha), (b, hb) in itertools.pairwise(seen):
        if (ha.dst_ip, ha.dst_port) != (hb.dst_ip, hb.dst_port):
            found.append(f"DNAT {ha.dst_ip}:{ha.dst_port} → {hb.dst_ip}:{hb.dst_port} between {a.label} and {b.label}")
        if ha.src_ip != hb.src_ip:
            found.append(f"SNAT {ha.src_ip} → {hb.src_ip} between {a.label} and {b.label}")
    return found


def _asymmetric(path: TracePath, captures: Sequence[PointCapture | None], marked_port: int, node_ips: dict[str, str]) -> str:
    """A reply that leaves the destination node toward another node, or comes back unencapsulated."""
    if not path.remote:
        return ""
    source_ip = node_ips.get(path.source_node, "")
    for point, capture in zip(path.points, captures, strict=True):
        if capture is None or point.role != Role.UNDERLAY:
            continue
        for h in capture.samples:
            if _direction(h, marked_port) != REPLY or h.icmp:
                continue
            if point.side == Side.DESTINATION and h.encapsulated and source_ip and h.outer_dst_ip != source_ip:
                to = next((n for n, ip in node_ips.items() if ip == h.outer_dst_ip), h.outer_dst_ip)
                return (
                    f"the reply leaves {path.destination_node} toward {to} ({h.outer_dst_ip}), "
                    f"not back to {path.source_node} ({source_ip}): asymmetric routing"
                )
            if point.side == Side.SOURCE and path.overlay_port and not h.encapsulated:
                return f"the reply arrives at {path.source_node} {point.interface} outside the overlay: asymmetric routing"
    return ""


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 2)


def _loss_at(rows: Sequence[TraceRow]) -> tuple[TraceRow, TraceRow] | None:
    """The first pair of watched points where the count of packets falls."""
    watched = [r for r in rows if r.seen is not None]
    for a, b in itertools.pairwise(watched):
        if b.packets < a.packets:
            return a, b
    return None


def _between(a: PathPoint | None, b: PathPoint, path: TracePath) -> tuple[Hop, str]:
    """The hop and node between two consecutive points."""
    if a is not None and a.role == Role.UNDERLAY and b.role == Role.UNDERLAY and a.node != b.node:
        return Hop.UNDERLAY, a.node
    node = b.node if a is None else a.node
    return (Hop.SOURCE_NODE if node == path.source_node else Hop.DESTINATION_NODE), node


def judge(
    path: TracePath,
    captures: Sequence[PointCapture | None],
    marked_port: int,
    probes: Sequence[ProbeView],
    *,
    protocol: str,
    node_ips: dict[str, str],
    retransmits: int = 0,
    unchecked: Mapping[str, str] | None = None,
) -> TraceReading:
    """Read the captures of one trace (`captures` in the order of `path.points`); `unchecked` says
    why a node's agent did not capture."""
    failed = dict(unchecked or {})
    request = _rows(path, captures, marked_port, REQUEST, failed)
    reply = _rows(path, captures, marked_port, REPLY, failed)
    replied_at_destination = bool(reply) and reply[0].seen is True
    rows = request + (reply if replied_at_destination or any(r.seen for r in reply) else _unanswered(reply))
    stop = find_stop(request)
    if stop is None and replied_at_destination:
        stop = find_stop(reply)
    nat = _nat(request, path, captures, marked_port)
    asymmetric = _asymmetric(path, captures, marked_port, node_ips)
    loss = None
    answered = [p for p in probes if p.outcome in ANSWERED]
    if len(probes) > 1:
        where = _loss_at(request) or (_loss_at(reply) if replied_at_destination else None)
        loss = Loss(
            len(probes),
            len(answered),
            where,
            _percentile([p.latency_ms for p in answered], 0.5),
            _percentile([p.latency_ms for p in answered], 0.99),
            retransmits,
        )
    cause = _cause(path, stop, loss, protocol, marked_port)
    frag_needed = next(
        (h.icmp_mtu for c in captures if c is not None for h in c.samples if h.icmp and h.icmp_type == 3 and h.icmp_code == 4),
        0,
    )
    return TraceReading(
        tuple(rows), stop, tuple(nat), asymmetric, loss, cause, tuple(f"{n}: {why}" for n, why in failed.items()), frag_needed
    )


def _unanswered(reply: Sequence[TraceRow]) -> list[TraceRow]:
    """No reply left the destination pod: the reply rows say so instead of naming a stop."""
    return [TraceRow(r.point, r.direction, r.seen, r.packets, r.first_seen_ms, r.note or "no reply was sent") for r in reply]


def _cause(path: TracePath, stop: Stop | None, loss: Loss | None, protocol: str, port: int) -> Cause | None:
    carried = f"UDP {path.overlay_port}" if path.overlay_port else f"{protocol} between the pod subnets"
    if loss is not None and 0 < loss.answered < loss.sent and loss.where is not None:
        # Only when the wire shows packets going missing: probes that timed out while every point saw
        # their replies were slow answers, not loss.
        hop, node = _between(loss.where[0].point, loss.where[1].point, path)
        where = f"between {loss.where[0].point.label} and {loss.where[1].point.label}"
        latency = f"latency p50 {loss.p50_ms} ms, p99 {loss.p99_ms} ms" if loss.p50_ms is not None else "no latency measured"
        return Cause(
            C.PACKET_LOSS,
            hop,
            node,
            f"{loss.sent - loss.answered} of {loss.sent} probes lost ({loss.rate:.0%}), {where}; {latency}; "
            f"{loss.retransmits} TCP retransmissions",
            {"node": node, "from": path.source_node, "to": path.destination_node},
        )
    if stop is None or stop.last_seen is None:
        return None
    a, b = stop.last_seen.point, stop.first_unseen.point
    if a.role == Role.UNDERLAY and b.role == Role.UNDERLAY and a.node != b.node:
        return Cause(
            C.UNDERLAY_DROPS,
            Hop.UNDERLAY,
            a.node,
            f"the {stop.direction} left {a.node}'s {a.interface} and never reached {b.node}'s {b.interface}: "
            f"something between the nodes drops {carried} from {a.node} to {b.node}",
            {"node": a.node, "from": a.node, "to": b.node, "carried": carried},
        )
    if a.role == Role.UNDERLAY and b.node == a.node and b.role != Role.UNDERLAY:
        hop = Hop.SOURCE_NODE if a.node == path.source_node else Hop.DESTINATION_NODE
        return Cause(
            C.NODE_FIREWALL_DROPS,
            hop,
            a.node,
            f"the {stop.direction} reached {a.node}'s {a.interface} and died in the node before {b.interface}: "
            f"a host firewall rule (INPUT or raw) drops {carried}",
            {"node": a.node, "carried": carried, "device": a.interface},
        )
    return None


def mtu_cause(path: TracePath, big: TraceReading, size: int) -> Cause | None:
    """A large don't-fragment probe, sent after a small one went through: where it dies says MTU.

    Lost between two nodes' NICs: the node network carries less than the nodes send. An ICMP
    frag-needed quoting it: the path's MTU, announced."""
    stop = big.stop
    if stop is not None and stop.direction == REQUEST and stop.last_seen is not None:
        a, b = stop.last_seen.point, stop.first_unseen.point
        if a.role == Role.UNDERLAY and b.role == Role.UNDERLAY and a.node != b.node:
            extra = f" ({size + 50} with the VXLAN header)" if path.overlay_port else ""
            return Cause(
                C.MTU_MISMATCH,
                Hop.UNDERLAY,
                a.node,
                f"{size}-byte packets{extra} with don't-fragment leave {a.node}'s {a.interface} and never reach "
                f"{b.node}'s {b.interface}, while the small probe passed: the node network between them carries "
                "less than the nodes send",
                {"node": a.node, "pod_mtu": str(size), "path_mtu": "the node network's"},
            )
    if big.frag_needed_mtu and big.frag_needed_mtu < size:
        return Cause(
            C.MTU_MISMATCH,
            Hop.UNDERLAY,
            path.source_node,
            f"an ICMP frag-needed says the path carries {big.frag_needed_mtu} bytes, less than the {size} the pod sends",
            {"node": path.source_node, "pod_mtu": str(size), "path_mtu": str(big.frag_needed_mtu)},
        )
    return None


def path_line(rows: Sequence[TraceRow]) -> str:
    """The path as one line of hops, ✓ seen, ✗ not seen, ? not checked, with the stop marked ⛔."""
    request = [r for r in rows if r.direction == REQUEST]
    reply = [r for r in rows if r.direction == REPLY]
    parts = []
    for group in (request, reply):
        stop = find_stop(group)
        marks = []
        for r in group:
            mark = "?" if r.seen is None else ("✓" if r.seen else "✗")
            text = f"{r.point.label} {mark}"
            if stop is not None and r is stop.first_unseen:
                text = f"⛔ {text}"
            marks.append(text)
        if marks:
            parts.append(f"{group[0].direction}: " + " → ".join(marks))
    return " | ".join(parts)
