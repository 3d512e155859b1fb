"""The trace: follow a marked probe hop by hop with captures on every probe point of its path.

It runs for the endpoints the source could not reach when the state checks found no cause (the
trail's `unexplained`), and for the first endpoint when the question asks for a trace ("trace …",
`ask --trace`, the Slack button) or describes intermittent failures (then the probe is repeated to
measure loss). The points come from `bot.playbook.tracing.points`, the reading from
`bot.playbook.tracing.judge`; this step only asks for what they need and turns the reading into an
outcome. What to ask depends on what was seen, so each trace is a chain of follow-ups:

1. both pods' interfaces, both nodes' state and the routes between them (`STEP`);
2. the capture set on every point of the planned path with the marked probe (`TraceAsk`);
3. only when the trace saw a node's firewall drop it: that node's filter view, to quote the rule;
   only when a path trace asked for reached the far end with no cause: the same path again with a
   don't-fragment datagram as large as the source pod's MTU;

then the next endpoint to trace. A cause named on the wire withdraws the DNS_RESOLUTION_FAILED that
stood in for it (`Outcome.withdrawn`). The marked source port is drawn when the plan is made (a port
to recognise packets by); every decision is otherwise a function of the case, the trail and the
answers.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace

from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure, MarkedProbe, RouteLookup, TracePlan, TraceRun
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import (
    Ask,
    At,
    Candidate,
    Need,
    Outcome,
    Seen,
    Step,
    Unchecked,
    Unexplained,
    result,
    unchecked,
)
from bot.playbook.steps.destination_node import hit_facts
from bot.playbook.steps.egress_path import masquerade_of
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import EgressNatAsk, FilterAsk, LocatePodAsk, NodeFactsAsk, RouteAsk, TraceAsk
from bot.playbook.tracing.judge import Cause, TraceReading, judge, mtu_cause, path_line
from bot.playbook.tracing.points import PathEnd, TracePath, cut_at_masquerade, plan_path

KIND = "trace"
NEEDS = frozenset({Need.TRACE, Need.LOCATE_POD, Need.NODE_FACTS, Need.ROUTE, Need.FILTER_STATE, Need.EGRESS_NAT})
MAX_TRACES = 2
"""Traces per source pod at most (each one is a capture set on every node of its path)."""
LOSS_PROBES = 20
LOSS_TIMEOUT_MS = 300
PATH_TIMEOUT_MS = 1000
DNS_NAME = "kube-dns.kube-system.svc.cluster.local"


def dns_query(name: str, query_id: int) -> bytes:
    """A DNS A query for `name` (built here from a fixed name, never from request text)."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", 1, 1)


def marked_port(seed: int, *probe: str) -> int:
    """A source port to mark the probe with (20000-29999, below the usual ephemeral range), derived
    from the investigation's `Case.marker_seed` and what the probe is, so that every probe of one
    investigation gets its own port and another investigation other ports, without randomness here."""
    digest = hashlib.sha256(repr((seed, probe)).encode()).digest()
    return 20000 + int.from_bytes(digest[:4], "big") % 10000


def _wanted(at: At) -> tuple[Unexplained, ...]:
    """What to trace from this source: the unexplained failures (the question's target first), or,
    when a trace was asked for, one endpoint of the target (on another node when there is one).
    Only endpoints with a known node are traced, from a source with a node and an address. A node or
    a host-network pod is traced from the node's own namespace (its path starts at the node's overlay
    or underlay interface); a client outside the cluster, played from a vantage node, is not: its path
    is the entry's, which a probe from the vantage node to the pod would not follow."""
    case, trail, src = at.case, at.trail, at.source
    wanted = sorted(trail.unexplained, key=lambda u: u.purpose != "target")
    if case.trace and not any(u.purpose == "target" for u in wanted) and case.target_kind in ("service", "pod"):
        candidates = [e for e in trail.reachable if e.ip not in trail.denied and e.node]
        # Prefer an endpoint on another node: that path crosses the underlay.
        candidates.sort(key=lambda e: e.node == src.node)
        if candidates:
            wanted.insert(0, Unexplained(candidates[0], case.protocol))
    # Loss is measured on one path (the question's own), the repeated probe takes its time.
    wanted = wanted[: 1 if case.trace == "loss" else MAX_TRACES]
    if src.node is None or not src.ip or case.source_kind == "external":
        return ()
    return tuple(u for u in wanted if u.endpoint.node is not None)


@dataclass(frozen=True)
class _Ends:
    """One trace's two ends: the nodes, their addresses, and whether the path crosses the underlay."""

    src_node: str
    src_ip: str
    dst_node: str
    src_node_ip: str
    dst_node_ip: str
    src_in_node: bool = False
    """The source sends from its node's own namespace (a node, a host-network pod)."""
    dst_in_node: bool = False
    """The endpoint listens in its node's own namespace (a node, a host-network pod)."""

    @property
    def remote(self) -> bool:
        return self.dst_node != self.src_node

    @property
    def probe_from(self) -> str:
        """The pod IP the marked probe is sent from: "" for the node's own namespace."""
        return "" if self.src_in_node else self.src_ip


def _ends(at: At, u: Unexplained) -> _Ends:
    nodes, src_node, dst_node = at.case.nodes, at.source.node or "", u.endpoint.node or ""
    e = u.endpoint
    node_ips = {n.ip for n in nodes.values()}
    return _Ends(
        src_node,
        at.source.ip or "",
        dst_node,
        nodes[src_node].ip if src_node in nodes else "",
        nodes[dst_node].ip if dst_node in nodes else "",
        src_in_node=at.source.host_network,
        dst_in_node=(e.pod is not None and e.pod.host_network) or e.ip in node_ips,
    )


def _locate_asks(x: _Ends, e_ip: str) -> tuple[LocatePodAsk | None, LocatePodAsk | None]:
    """The pod interfaces to read at each end; None for an end in the node's own namespace."""
    return (
        None if x.src_in_node else LocatePodAsk(x.src_node, x.src_ip),
        None if x.dst_in_node else LocatePodAsk(x.dst_node, e_ip),
    )


def _plan_asks(at: At, u: Unexplained) -> tuple[Ask[object], ...]:
    x, e = _ends(at, u), u.endpoint
    asks: list[Ask[object]] = [
        *(a for a in _locate_asks(x, e.ip) if a is not None),
        NodeFactsAsk(x.src_node),
        NodeFactsAsk(x.dst_node),
        RouteAsk(x.src_node, e.ip),
    ]
    if x.remote and x.dst_node_ip:
        asks.append(RouteAsk(x.src_node, x.dst_node_ip))
    if x.remote and x.src_node_ip:
        asks.append(RouteAsk(x.dst_node, x.src_node_ip))
    if (masq := _masquerade_ask(x, u)) is not None:
        asks.append(masq)
    return tuple(asks)


def _masquerade_ask(x: _Ends, u: Unexplained) -> EgressNatAsk | None:
    """A pod's probe to another node's own address leaves its node through nat POSTROUTING: whether
    it is masqueraded there (and its marked port rewritten) decides how far the trace can follow it."""
    if x.src_in_node or not x.dst_in_node or not x.remote:
        return None
    e = u.endpoint
    return EgressNatAsk(x.src_node, x.src_ip, e.ip, u.protocol, e.port)


def _asks(at: At) -> tuple[Ask[object], ...]:
    todo = _wanted(at)
    return _plan_asks(at, todo[0]) if todo else ()


def _decide(at: At, seen: Seen) -> Outcome:
    return _planned(at, seen, _wanted(at))


def _next(todo: tuple[Unexplained, ...]) -> Step | None:
    """The step tracing the next endpoint, if any is left."""
    if not todo:
        return None

    def asks(at: At) -> tuple[Ask[object], ...]:
        return _plan_asks(at, todo[0])

    def decide(at: At, seen: Seen) -> Outcome:
        return _planned(at, seen, todo)

    return Step(KIND, Hop.UNDERLAY, NEEDS, asks, decide)


def _planned(at: At, seen: Seen, todo: tuple[Unexplained, ...]) -> Outcome:
    """Plan the trace to `todo[0]` from both ends' interfaces, state and routes; run it next."""
    if not todo:
        return Outcome()
    u, case = todo[0], at.case
    x, e = _ends(at, u), u.endpoint
    locate_src, locate_dst = _locate_asks(x, e.ip)
    src_pod = seen[locate_src] if locate_src is not None else None
    dst_pod = seen[locate_dst] if locate_dst is not None else None
    src_facts, dst_facts = seen[NodeFactsAsk(x.src_node)], seen[NodeFactsAsk(x.dst_node)]
    route = seen[RouteAsk(x.src_node, e.ip)]
    out_nic = seen[RouteAsk(x.src_node, x.dst_node_ip)].value if x.remote and x.dst_node_ip else None
    back_nic = seen[RouteAsk(x.dst_node, x.src_node_ip)].value if x.remote and x.src_node_ip else None
    missed = (unchecked(src_pod, "the source pod's interfaces (trace)") if src_pod is not None else ()) + (
        unchecked(dst_pod, "the destination pod's interfaces (trace)") if dst_pod is not None else ()
    )
    path = plan_path(
        PathEnd(x.src_node, src_pod.value if src_pod is not None else None, src_facts.value, _device(out_nic), x.src_in_node),
        x.src_ip,
        PathEnd(x.dst_node, dst_pod.value if dst_pod is not None else None, dst_facts.value, _device(back_nic), x.dst_in_node),
        e.ip,
        route.value,
    )
    if (masq := _masquerade_ask(x, u)) is not None:
        nat = seen[masq]
        missed += unchecked(nat, f"{x.src_node}'s egress NAT (trace)")
        if nat.value is None or nat.value.verdict != "untranslated":
            rule = masquerade_of(nat.value) if nat.value is not None else "its nat rules could not be read"
            path = cut_at_masquerade(path, rule)
    if not path.points:
        return Outcome(unchecked=missed) + _nothing_to_watch(at, todo, path)
    port = marked_port(case.marker_seed, x.src_ip, e.ip, str(e.port), u.protocol)
    loss = case.trace == "loss"
    payload = dns_query(DNS_NAME, port) if u.protocol == "UDP" and e.port == 53 else b""
    probe = MarkedProbe(
        x.src_node,
        x.probe_from,
        e.ip,
        e.port,
        u.protocol,
        port,
        count=LOSS_PROBES if loss else 1,
        timeout_ms=LOSS_TIMEOUT_MS if loss else PATH_TIMEOUT_MS,
        payload=payload,
    )
    addresses = tuple(dict.fromkeys(a for a in (x.src_ip, e.ip, x.src_node_ip, x.dst_node_ip) if a))
    plan = TracePlan(
        tuple(p.spec for p in path.points),
        probe,
        addresses,
        path.overlay_port,
        max_duration_ms=min(5000, probe.count * probe.timeout_ms + 1500),
        retransmit_probes=3 if loss and u.protocol == "TCP" else 0,
    )
    pod = src_pod.value if src_pod is not None else None
    mtu = pod.eth0.mtu if pod is not None and pod.eth0 is not None else 0
    return Outcome(unchecked=missed, then=_run_step(todo, path, plan, mtu))


def _nothing_to_watch(at: At, todo: tuple[Unexplained, ...], path: TracePath) -> Outcome:
    """Both ends in one node's own namespace: the packets never leave its stack (loopback), so no
    interface on the way can be watched. Said as the trace's result, then the next endpoint."""
    e = todo[0].endpoint
    why = f"no interface to watch: the path stays inside {path.source_node}'s own network namespace ({'; '.join(path.absent)})"
    step = result(KIND, f"trace {at.source.name} → {e.pod.name if e.pod else e.ip}:{e.port}", StepStatus.SKIP, why, (), e.node)
    return Outcome((step,), then=_next(todo[1:]))


def _run_step(todo: tuple[Unexplained, ...], path: TracePath, plan: TracePlan, mtu: int) -> Step:
    """Capture on every point while the marked probe runs; read where it went."""
    u = todo[0]

    def asks(at: At) -> tuple[Ask[object], ...]:
        return (TraceAsk(plan.probe.node, plan),)

    def decide(at: At, seen: Seen) -> Outcome:
        run = _run(seen[TraceAsk(plan.probe.node, plan)].value, plan)
        node_ips = {name: ref.ip for name, ref in at.case.nodes.items()}
        reading = judge(
            path,
            run.captures,
            plan.probe.source_port,
            run.probes,
            protocol=u.protocol,
            node_ips=node_ips,
            retransmits=run.retransmits,
            unchecked=run.unchecked,
        )
        missed = tuple(Unchecked("the capture", node, CallFailure.UNREACHABLE, why) for node, why in run.unchecked.items())
        evidence = (_evidence(reading, at.source.node, path.absent),)
        cause = reading.cause
        if cause is not None and cause.code == C.NODE_FIREWALL_DROPS and (ask := _filter_ask(at, cause, path, u)) is not None:
            return Outcome(unchecked=missed, then=_quote_step(todo, path, plan, mtu, reading, evidence, ask))
        return Outcome(unchecked=missed) + _concluded(at, todo, path, plan, mtu, reading, cause, evidence)

    return Step(KIND, Hop.UNDERLAY, NEEDS, asks, decide)


def _run(run: TraceRun | None, plan: TracePlan) -> TraceRun:
    """A trace with no answer saw nothing anywhere: every point not checked."""
    return run if run is not None else TraceRun(tuple(None for _ in plan.points))


def _filter_ask(at: At, cause: Cause, path: TracePath, u: Unexplained) -> FilterAsk | None:
    """The node's filter view of what the trace saw dropped (None: an end's address is not known)."""
    nodes = at.case.nodes
    other = path.source_node if cause.node == path.destination_node else path.destination_node
    src_ip, dst_ip = (nodes[n].ip if n in nodes else "" for n in (other, cause.node))
    if not src_ip or not dst_ip:
        return None
    overlay = path.overlay_port
    device = cause.facts.get("device", "eth0")
    return FilterAsk(
        cause.node,
        src_ip,
        dst_ip,
        "UDP" if overlay else u.protocol,
        overlay or u.endpoint.port,
        (device,),
    )


def _quote_step(
    todo: tuple[Unexplained, ...],
    path: TracePath,
    plan: TracePlan,
    mtu: int,
    reading: TraceReading,
    evidence: tuple[Evidence, ...],
    ask: FilterAsk,
) -> Step:
    """Quote the rule that drops what the trace saw dropped, when the agent shows it."""

    def asks(at: At) -> tuple[Ask[object], ...]:
        return (ask,)

    def decide(at: At, seen: Seen) -> Outcome:
        cause = reading.cause
        assert cause is not None
        view = seen[ask].value
        quoted = evidence
        shown = (view.drops or view.possible) if view is not None else ()
        if view is not None and shown:
            # A rule with a match the flow alone cannot settle (`-i eth0`) is quoted as possible: the
            # trace saw the packets die there, the rule is the likely reason.
            hit = shown[0]
            rule = str(hit) if view.drops else f"possibly {hit}"
            quoted = (*evidence, ev("filter", f"{cause.node}: {rule}", cause.node, drops=[str(d) for d in shown]))
            # A rule that surely matches gets the commands of its own backend (nft delete rule … handle N).
            sure = hit_facts(hit) if view.drops else {"rule": rule}
            cause = replace(cause, summary=f"{cause.summary} ({rule})", facts={**cause.facts, **sure})
        return _concluded(at, todo, path, plan, mtu, reading, cause, quoted)

    return Step(KIND, Hop.UNDERLAY, NEEDS, asks, decide)


def _concluded(
    at: At,
    todo: tuple[Unexplained, ...],
    path: TracePath,
    plan: TracePlan,
    mtu: int,
    reading: TraceReading,
    cause: Cause | None,
    evidence: tuple[Evidence, ...],
) -> Outcome:
    """The trace's step result and cause; then the large probe (a healthy path traced on request)
    or the next endpoint."""
    u, case, trail, src = todo[0], at.case, at.trail, at.source
    e = u.endpoint
    found: tuple[Candidate, ...] = ()
    withdrawn: tuple[Candidate, ...] = ()
    if cause is not None:
        found = (
            Candidate(cause.code, cause.hop, cause.summary, cause.node, remediation(cause.code, **cause.facts, port=str(e.port))),
        )
        # The trace named the cause the DNS failure stood in for (a lookup that timed out while
        # every server answered directly is the loss the trace measured).
        guess = trail.dns_guess if u.purpose == "dns" else None
        if guess is None and cause.code == C.PACKET_LOSS and trail.lookup_timed_out:
            guess = trail.dns_guess
        withdrawn = (guess,) if guess is not None else ()
    status = StepStatus.FAIL if cause is not None or reading.stop is not None else StepStatus.PASS
    if status == StepStatus.PASS and (reading.unchecked or all(r.seen is None for r in reading.rows)):
        status = StepStatus.WARN
    name = f"trace {src.name} → {e.pod.name if e.pod else e.ip}:{e.port}"
    step = result(KIND, name, status, _summary(reading, path.absent), evidence, e.node)
    large = case.trace == "path" and path.remote and not path.cut and reading.reached and cause is None and mtu > 576
    then = _large_step(todo, path, plan, mtu) if large else _next(todo[1:])
    return Outcome((step,), found, withdrawn=withdrawn, then=then)


def _large_step(todo: tuple[Unexplained, ...], path: TracePath, small: TracePlan, mtu: int) -> Step:
    """The same path again with one don't-fragment UDP datagram as large as the source pod's MTU: a
    node network that carries less than the overlay needs lets small packets through, not this one."""
    port = marked_port(small.probe.source_port, "large", small.probe.pod_ip, small.probe.target)
    size = mtu - 28  # the IP and UDP headers
    probe = replace(small.probe, protocol="UDP", source_port=port, count=1, timeout_ms=500, payload=b"", size=size)
    plan = replace(small, probe=probe, max_duration_ms=1500, retransmit_probes=0)
    ask = TraceAsk(probe.node, plan)
    e = todo[0].endpoint

    def asks(at: At) -> tuple[Ask[object], ...]:
        return (ask,)

    def decide(at: At, seen: Seen) -> Outcome:
        run = _run(seen[ask].value, plan)
        node_ips = {name: ref.ip for name, ref in at.case.nodes.items()}
        big = judge(path, run.captures, port, run.probes, protocol="UDP", node_ips=node_ips, unchecked=run.unchecked)
        cause = mtu_cause(path, big, mtu)
        found = (
            (Candidate(cause.code, cause.hop, cause.summary, cause.node, remediation(cause.code, **cause.facts)),)
            if cause is not None
            else ()
        )
        summary = cause.summary if cause is not None else f"a {mtu}-byte datagram with don't-fragment crosses the path"
        step = result(
            KIND,
            f"trace {at.source.name} → {e.pod.name if e.pod else e.ip}:{e.port} ({mtu} bytes, DF)",
            StepStatus.FAIL if cause is not None else StepStatus.PASS,
            summary,
            (_evidence(big, at.source.node, path.absent),),
            e.node,
        )
        return Outcome((step,), found, then=_next(todo[1:]))

    return Step(KIND, Hop.UNDERLAY, NEEDS, asks, decide)


def _device(lookup: RouteLookup | None) -> str:
    return lookup.route.device if lookup is not None and lookup.route is not None else ""


def _summary(reading: TraceReading, absent: tuple[str, ...] = ()) -> str:
    if reading.cause is not None:
        text = reading.cause.summary
    elif reading.stop is not None:
        last = reading.stop.last_seen.point.label if reading.stop.last_seen else "the source"
        text = f"the {reading.stop.direction} stops after {last}, before {reading.stop.first_unseen.point.label}"
    elif reading.reached:
        text = "the probe was seen at every point, there and back"
    else:
        text = "the probe could not be followed"
    extra = [*reading.nat, *([reading.asymmetric] if reading.asymmetric else []), *absent]
    return "; ".join([text, *extra])


def _evidence(reading: TraceReading, node: str | None, absent: tuple[str, ...] = ()) -> Evidence:
    loss = reading.loss
    return ev(
        "trace",
        path_line(reading.rows),
        node,
        rows=[r.document() for r in reading.rows],
        stop=(
            {
                "direction": reading.stop.direction,
                "last_seen": reading.stop.last_seen.point.label if reading.stop.last_seen else None,
                "first_unseen": reading.stop.first_unseen.point.label,
            }
            if reading.stop
            else None
        ),
        nat=list(reading.nat),
        asymmetric=reading.asymmetric or None,
        loss=(
            {
                "sent": loss.sent,
                "answered": loss.answered,
                "rate": round(loss.rate, 3),
                "p50_ms": loss.p50_ms,
                "p99_ms": loss.p99_ms,
                "retransmits": loss.retransmits,
            }
            if loss
            else None
        ),
        unchecked=list(reading.unchecked),
        absent=list(absent),
    )


STEP = Step(KIND, Hop.UNDERLAY, NEEDS, _asks, _decide)
