"""What the path picture shows, read from an investigation: one lane per sampled source pod, each a
row of probe points in packet-path order, the verdict's hop marked, trace counts when a trace ran.

Pure: the input is the verdict, the steps (with their evidence, as the playbook recorded them) and,
optionally, a packet trace (``[{"node", "netns", "interface", "direction", "seen", "packets",
"first_seen_ms", "note"}]``). The same input gives the same `PathPicture`, in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bot.playbook.models import Evidence, Finding, StepResult, StepStatus, Verdict
from bot.verdicts import Hop, VerdictCode

MAX_LANES = 4
"""Source pods drawn side by side; more are summed up in a note (the investigation samples a few)."""
MAX_DESTINATIONS = 3
"""Destination pods named in a lane's last point."""
_SOURCE_STEP = re.compile(r"^source (\S+): ")
_PATH_STEP = re.compile(r"^path (\S+) → ")
_SOURCE_NODE_STEP = re.compile(r"^source node (\S+)$")


class PointState(StrEnum):
    """How a point looks: what its checks found, or that the packet never got there."""

    PASS = "pass"  # noqa: S105 - a point state, not a password
    WARN = "warn"
    FAIL = "fail"
    UNCHECKED = "unchecked"
    NOT_REACHED = "not-reached"


@dataclass(frozen=True)
class TraceMark:
    """What the packet trace counted at one point: ``in`` or ``out``, packets, and whether it was seen."""

    interface: str
    direction: str
    packets: int
    seen: bool


@dataclass(frozen=True)
class PathPoint:
    """One probe point: a pod, an interface, the bridge, a node, the NAT, the overlay, the underlay."""

    key: str
    """Stable role of the point in the lane: ``pod``, ``veth``, ``bridge``, ``node``, ``nat``, ``overlay``,
    ``underlay``, ``dest-node``, ``dest-pod``."""
    hop: Hop
    title: str
    lines: tuple[str, ...] = ()
    state: PointState = PointState.UNCHECKED
    marked: bool = False
    """The verdict's (or this lane's own) cause is here: drawn in red with a thick border."""
    trace: tuple[TraceMark, ...] = ()


@dataclass(frozen=True)
class Lane:
    """The path of one sampled source pod, with what its own outcome was."""

    source: str
    node: str
    code: str
    points: tuple[PathPoint, ...]


@dataclass(frozen=True)
class Badge:
    """A check off the wire (API, DNS, NetworkPolicy): its hop, how it went, and whether it is the cause."""

    hop: Hop
    label: str
    state: PointState
    marked: bool = False


@dataclass(frozen=True)
class PathPicture:
    """Everything the picture draws, in drawing order."""

    title: str
    verdict_code: str
    verdict_line: str
    failed: bool
    badges: tuple[Badge, ...]
    lanes: tuple[Lane, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


# -------------------------------------------------------------------------------- reading steps

_STATE_OF = {
    StepStatus.PASS: PointState.PASS,
    StepStatus.WARN: PointState.WARN,
    StepStatus.FAIL: PointState.FAIL,
    StepStatus.SKIP: PointState.UNCHECKED,
}
_RANK = {PointState.UNCHECKED: 0, PointState.PASS: 1, PointState.WARN: 2, PointState.FAIL: 3, PointState.NOT_REACHED: 0}
_HOP_POINT = {
    Hop.SOURCE_POD: "veth",
    Hop.SOURCE_NODE: "node",
    Hop.SERVICE_NAT: "nat",
    Hop.UNDERLAY: "overlay",
    Hop.DESTINATION_NODE: "dest-node",
    Hop.DESTINATION_POD: "dest-pod",
}
_BADGE_HOPS = ((Hop.API, "API"), (Hop.DNS, "DNS"), (Hop.POLICY, "NetworkPolicy"))


def _worst(states: Iterable[PointState]) -> PointState:
    found = [s for s in states if s is not PointState.NOT_REACHED]
    return max(found, key=lambda s: _RANK[s]) if found else PointState.UNCHECKED


def _evidence(steps: Iterable[StepResult], kind: str) -> list[Evidence]:
    return [e for s in steps for e in s.evidence if e.kind == kind]


def _data(evidence: Sequence[Evidence]) -> Mapping[str, Any]:
    return evidence[0].data if evidence else {}


def _link_line(link: Any) -> str:
    if not isinstance(link, Mapping) or not link.get("name"):
        return ""
    state = str(link.get("oper_state") or ("UP" if link.get("admin_up") else "DOWN"))
    mtu = f" mtu {link['mtu']}" if link.get("mtu") else ""
    return f"{link['name']} {state.lower()}{mtu}"


def _source_pods(steps: Sequence[StepResult], per_source: Mapping[str, str]) -> list[str]:
    """Source pod names in a stable order: those the outcomes name, then those only the steps name."""
    names = [key.rsplit("/", 1)[-1] for key in per_source]
    for step in steps:
        found = _SOURCE_STEP.match(step.name)
        if found and found.group(1) not in names:
            names.append(found.group(1))
    return names


def _hop_of(code: str, verdict: Verdict, findings: Sequence[Finding], node: str) -> tuple[Hop | None, str | None]:
    """Where a lane's own outcome `code` puts its cause (and on which node), from the verdict or a finding."""
    if code == verdict.code.value:
        return verdict.hop, verdict.node
    for finding in findings:
        if finding.code.value == code and finding.hop is not None and finding.node in (None, node):
            return finding.hop, finding.node
    for finding in findings:
        if finding.code.value == code and finding.hop is not None:
            return finding.hop, finding.node
    return None, None


def _trace_marks(
    trace: Sequence[Mapping[str, Any]], node: str, netns: str | None, interfaces: Iterable[str]
) -> tuple[TraceMark, ...]:
    names = {i for i in interfaces if i}
    marks = []
    for row in trace:
        if str(row.get("node") or "") != node or str(row.get("interface") or "") not in names:
            continue
        if netns is not None and row.get("netns") and str(row["netns"]) != netns:
            continue
        if netns is None and row.get("netns") and "-pod-" in str(row["netns"]):
            continue
        packets = row.get("packets")
        marks.append(
            TraceMark(
                interface=str(row["interface"]),
                direction=str(row.get("direction") or ""),
                packets=packets if isinstance(packets, int) and not isinstance(packets, bool) else 0,
                seen=bool(row.get("seen")),
            )
        )
    return tuple(marks)


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    pod: str
    node: str


def _endpoints(steps: Sequence[StepResult]) -> dict[str, _Endpoint]:
    found: dict[str, _Endpoint] = {}
    for evidence in _evidence(steps, "endpoints"):
        for row in evidence.data.get("endpoints") or []:
            if isinstance(row, Mapping) and row.get("ip"):
                found[str(row["ip"])] = _Endpoint(str(row["ip"]), str(row.get("pod") or row["ip"]), str(row.get("node") or ""))
    return found


def _lane(
    pod: str,
    steps: Sequence[StepResult],
    code: str,
    verdict: Verdict,
    findings: Sequence[Finding],
    trace: Sequence[Mapping[str, Any]],
) -> Lane:
    mine = [s for s in steps if (m := _SOURCE_STEP.match(s.name)) and m.group(1) == pod]
    paths = [s for s in steps if (m := _PATH_STEP.match(s.name)) and m.group(1) == pod]
    status = _data(_evidence(mine, "pod-status"))
    node = next((s.node for s in mine if s.node), "") or ""
    node_steps = [s for s in steps if (m := _SOURCE_NODE_STEP.match(s.name)) and m.group(1) == node]
    network_steps = [s for s in mine if s.name.endswith(": pod network")]
    network = _data(_evidence(network_steps, "pod-network"))
    node_data = _data(_evidence(node_steps, "node"))
    nat_steps = [s for s in mine if s.name.endswith((": service NAT", ": conntrack"))]
    nat = _data(_evidence(nat_steps, "service-nat"))
    probe_steps = [s for s in mine if s.name.endswith((": probes", ": VIP vs endpoints"))]
    probes = _evidence(probe_steps, "probe")
    api_steps = [s for s in mine if s.name.endswith(": API")]
    netns = str(network.get("netns") or "") or None
    eth0, peer = network.get("eth0"), network.get("host_peer")
    peer_name = str(peer.get("name") or "") if isinstance(peer, Mapping) else ""
    bridge = str(peer.get("master") or "") if isinstance(peer, Mapping) else ""
    overlays = [o for o in node_data.get("overlays") or [] if isinstance(o, Mapping)]
    overlay_names = [str(o.get("name") or "") for o in overlays]

    def state_of(group: Sequence[StepResult]) -> PointState:
        return _worst(_STATE_OF[s.status] for s in group)

    path_state = state_of(paths) if paths else state_of(probe_steps)
    points = [
        PathPoint(
            "pod",
            Hop.SOURCE_POD,
            pod,
            tuple(x for x in (str(status.get("ip") or ""), str(status.get("phase") or "")) if x),
            state_of(api_steps),
            trace=_trace_marks(trace, node, netns, ["eth0"]) if netns else (),
        ),
        PathPoint(
            "veth",
            Hop.SOURCE_POD,
            "veth pair",
            tuple(x for x in (_link_line(eth0), _link_line(peer)) if x),
            state_of(network_steps),
            trace=_trace_marks(trace, node, None, [peer_name]),
        ),
        PathPoint(
            "bridge",
            Hop.SOURCE_NODE,
            bridge or "host routes",
            ("bridge",) if bridge else ("no bridge (routed)",),
            state_of(network_steps),
            trace=_trace_marks(trace, node, None, [bridge]),
        ),
        PathPoint("node", Hop.SOURCE_NODE, node or "source node", _node_lines(node_data), state_of(node_steps)),
    ]
    if nat or nat_steps:
        points.append(PathPoint("nat", Hop.SERVICE_NAT, "service NAT", _nat_lines(nat), state_of(nat_steps)))
    points.append(
        PathPoint(
            "overlay",
            Hop.UNDERLAY,
            overlay_names[0] if overlay_names else "overlay",
            tuple(f"{'up' if o.get('up') else 'DOWN'} mtu {o.get('mtu')}" for o in overlays[:1]) or ("none on this node",),
            path_state,
            trace=_trace_marks(trace, node, None, overlay_names),
        )
    )
    points.append(
        PathPoint(
            "underlay",
            Hop.UNDERLAY,
            "underlay",
            ("node network",),
            path_state,
            trace=_trace_marks(trace, node, None, ["eth0"]),
        )
    )
    dest_nodes, dest_pods = _destinations(probes, _endpoints(steps), paths)
    points.append(PathPoint("dest-node", Hop.DESTINATION_NODE, "destination node", dest_nodes, path_state))
    points.append(PathPoint("dest-pod", Hop.DESTINATION_POD, "destination", dest_pods, path_state))
    return Lane(pod, node, code, _mark(tuple(points), code, verdict, findings, node))


def _node_lines(data: Mapping[str, Any]) -> tuple[str, ...]:
    if not data:
        return ()
    lines = [f"ip_forward={1 if data.get('ip_forward') else 0}"]
    if data.get("conntrack_max"):
        lines.append(f"conntrack {data.get('conntrack_count', 0)}/{data['conntrack_max']}")
    return tuple(lines)


def _nat_lines(data: Mapping[str, Any]) -> tuple[str, ...]:
    if not data:
        return ()
    endpoints = [str(e) for e in data.get("endpoints") or []]
    rules = str(data.get("mode") or "")
    if not data.get("programmed", True):
        return (rules, "not programmed")
    return (rules, f"VIP → {len(endpoints)} endpoint(s)", *endpoints[:2])


def _destinations(
    probes: Sequence[Evidence], endpoints: Mapping[str, _Endpoint], paths: Sequence[StepResult]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    nodes: list[str] = []
    pods: list[str] = []
    for probe in probes:
        target = str(probe.data.get("target") or "")
        ip = target.rsplit(":", 1)[0]
        endpoint = endpoints.get(ip)
        if endpoint is None:
            continue
        ok = probe.data.get("outcome") == "connected"
        if endpoint.node and endpoint.node not in nodes:
            nodes.append(endpoint.node)
        pods.append(f"{'✓' if ok else '✗'} {endpoint.pod.rsplit('/', 1)[-1]}")
    if not nodes:
        nodes = sorted({s.node for s in paths if s.node})
    extra = len(pods) - MAX_DESTINATIONS
    return tuple(nodes[:MAX_DESTINATIONS]), tuple(pods[:MAX_DESTINATIONS]) + ((f"+{extra} more",) if extra > 0 else ())


def _mark(
    points: tuple[PathPoint, ...], code: str, verdict: Verdict, findings: Sequence[Finding], node: str
) -> tuple[PathPoint, ...]:
    """Mark the lane's cause and grey out the points after it: the packet never got there."""
    if code in ("", VerdictCode.NO_FAULT_FOUND.value):
        return points
    hop, hop_node = _hop_of(code, verdict, findings, node)
    key = _HOP_POINT.get(hop) if hop is not None else None
    if key in ("veth", "bridge", "node", "nat", "overlay") and hop_node and node and hop_node != node:
        # The cause sits on another node this lane's packets go to (its overlay device, its forwarding):
        # from this source the path breaks where it arrives there.
        key = "dest-node"
    if key is None or key not in {p.key for p in points}:
        return points
    out: list[PathPoint] = []
    after = False
    for point in points:
        if point.key == key:
            lines = point.lines
            if hop_node and hop_node != node and hop_node in lines:
                lines = (f"cause on {hop_node}", *(x for x in lines if x != hop_node))
            out.append(PathPoint(point.key, point.hop, point.title, lines, PointState.FAIL, True, point.trace))
            after = True
        elif after:
            out.append(PathPoint(point.key, point.hop, point.title, point.lines, PointState.NOT_REACHED, False, point.trace))
        elif point.state is PointState.FAIL:
            out.append(PathPoint(point.key, point.hop, point.title, point.lines, PointState.WARN, False, point.trace))
        else:
            out.append(point)
    return tuple(out)


def _badges(steps: Sequence[StepResult], verdict: Verdict) -> tuple[Badge, ...]:
    badges = []
    for hop, label in _BADGE_HOPS:
        if hop is Hop.API:
            group = [s for s in steps if s.name.startswith("target") or s.name.endswith(": API")]
        elif hop is Hop.DNS:
            group = [s for s in steps if s.name.endswith(": DNS")]
        else:
            group = [s for s in steps if s.name.endswith(": policy")]
        marked = verdict.hop is hop
        state = PointState.FAIL if marked else _worst(_STATE_OF[s.status] for s in group)
        badges.append(Badge(hop, label, state, marked))
    return tuple(badges)


def _derived_code(pod: str, steps: Sequence[StepResult], verdict: Verdict) -> str:
    """A lane's outcome when the result does not carry it (as stored in the history): the verdict when
    a step of that source pod failed, else no fault."""
    failed = any(
        s.status is StepStatus.FAIL and (m := _SOURCE_STEP.match(s.name) or _PATH_STEP.match(s.name)) and m.group(1) == pod
        for s in steps
    )
    return verdict.code.value if failed else VerdictCode.NO_FAULT_FOUND.value


def path_picture(
    *,
    source: str,
    target: str,
    verdict: Verdict,
    steps: Sequence[StepResult],
    findings: Sequence[Finding] = (),
    per_source: Mapping[str, str] | None = None,
    trace: Sequence[Mapping[str, Any]] | None = None,
) -> PathPicture:
    """The picture of one investigation (see the module docstring)."""
    outcomes = dict(per_source or {})
    pods = _source_pods(steps, outcomes)
    code_of = {key.rsplit("/", 1)[-1]: code for key, code in outcomes.items()}
    lanes = [
        _lane(pod, steps, code_of.get(pod) or _derived_code(pod, steps, verdict), verdict, findings, trace or ())
        for pod in pods[:MAX_LANES]
    ]
    notes = []
    if len(pods) > MAX_LANES:
        notes.append(f"{len(pods) - MAX_LANES} more source pod(s) not drawn")
    failed = verdict.code is not VerdictCode.NO_FAULT_FOUND
    where = " · ".join(x for x in (verdict.hop.value if verdict.hop else "", verdict.node or "") if x)
    return PathPicture(
        title=f"{source} → {target}",
        verdict_code=verdict.code.value,
        verdict_line=f"{verdict.code.value}" + (f" at {where}" if where else ""),
        failed=failed,
        badges=_badges(steps, verdict),
        lanes=tuple(lanes),
        notes=tuple(notes),
    )


__all__ = [
    "Badge",
    "Lane",
    "PathPicture",
    "PathPoint",
    "PointState",
    "TraceMark",
    "path_picture",
]
