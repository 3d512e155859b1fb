"""The trace: follow a marked probe hop by hop with captures on every probe point of its path.

It runs for the endpoints the source could not reach when the state checks found no cause, and for
the first endpoint when the question asks for a trace ("trace …", `ask --trace`, the Slack button)
or describes intermittent failures (then the probe is repeated to measure loss). The points come
from `bot.playbook.tracing.points`, the reading from `bot.playbook.tracing.judge`; this step only
gathers what they need and records the result.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from dataclasses import replace

from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import MarkedProbe, Observed, RouteLookup, TracePlan
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, Need, SourceStep, SourceWalk, Unexplained
from bot.playbook.steps.evidence import ev
from bot.playbook.tracing.judge import Cause, TraceReading, judge, mtu_cause, path_line
from bot.playbook.tracing.points import PathEnd, TracePath, plan_path

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


def marked_port() -> int:
    """A source port to mark the probe with (outside the usual ephemeral range's start)."""
    return random.randint(20000, 29999)  # noqa: S311 - a port to recognise packets by, not a secret


def _wanted(sw: SourceWalk) -> list[Unexplained]:
    """What to trace from this source: the unexplained failures (the question's target first), or,
    when a trace was asked for, one endpoint of the target (on another node when there is one)."""
    case = sw.case
    wanted = sorted(sw.unexplained, key=lambda u: u.purpose != "target")
    if case.trace and not any(u.purpose == "target" for u in wanted) and case.target_kind in ("service", "pod"):
        candidates = [e for e in sw.reachable if e.ip not in sw.denied and e.node]
        # Prefer an endpoint on another node: that path crosses the underlay.
        candidates.sort(key=lambda e: e.node == sw.src.node)
        if candidates:
            wanted.insert(0, Unexplained(candidates[0], case.protocol))
    # Loss is measured on one path (the question's own), the repeated probe takes its time.
    return wanted[: 1 if case.trace == "loss" else MAX_TRACES]


async def trace_endpoint(sw: SourceWalk, u: Unexplained) -> TraceReading | None:
    """Plan, run and read one trace from the source pod to `u.endpoint`; record it as a step."""
    w, src, case = sw.w, sw.src, sw.case
    e = u.endpoint
    if src.node is None or not src.ip or e.node is None:
        return None
    started = time.monotonic()
    obs = w.obs
    src_node_ip = case.nodes[src.node].ip if src.node in case.nodes else ""
    dst_node_ip = case.nodes[e.node].ip if e.node in case.nodes else ""
    remote = e.node != src.node
    src_pod, dst_pod, src_facts, dst_facts = await asyncio.gather(
        obs.locate_pod(src.node, src.ip), obs.locate_pod(e.node, e.ip), obs.node_facts(src.node), obs.node_facts(e.node)
    )
    route, out_nic, back_nic = await asyncio.gather(
        obs.route(src.node, e.ip),
        obs.route(src.node, dst_node_ip) if remote and dst_node_ip else _nothing(src.node),
        obs.route(e.node, src_node_ip) if remote and src_node_ip else _nothing(e.node),
    )
    for observed, what in ((src_pod, "the source pod"), (dst_pod, "the destination pod")):
        if observed.unreachable:
            w.unreachable(observed, f"{what}'s interfaces (trace)")
    path = plan_path(
        PathEnd(src.node, src_pod.value, src_facts.value, _device(out_nic.value)),
        src.ip,
        PathEnd(e.node, dst_pod.value, dst_facts.value, _device(back_nic.value)),
        e.ip,
        route.value,
    )
    port = marked_port()
    loss = case.trace == "loss"
    protocol = u.protocol
    payload = dns_query(DNS_NAME, port) if protocol == "UDP" and e.port == 53 else b""
    probe = MarkedProbe(
        src.node,
        src.ip,
        e.ip,
        e.port,
        protocol,
        port,
        count=LOSS_PROBES if loss else 1,
        timeout_ms=LOSS_TIMEOUT_MS if loss else PATH_TIMEOUT_MS,
        payload=payload,
    )
    addresses = tuple(dict.fromkeys(a for a in (src.ip, e.ip, src_node_ip, dst_node_ip) if a))
    plan = TracePlan(
        tuple(p.spec for p in path.points),
        probe,
        addresses,
        path.overlay_port,
        max_duration_ms=min(5000, probe.count * probe.timeout_ms + 1500),
        retransmit_probes=3 if loss and u.protocol == "TCP" else 0,
    )
    run = await obs.trace(plan)
    node_ips = {name: ref.ip for name, ref in case.nodes.items()}
    reading = judge(
        path,
        run.captures,
        port,
        run.probes,
        protocol=protocol,
        node_ips=node_ips,
        retransmits=run.retransmits,
        unchecked=run.unchecked,
    )
    for node, why in run.unchecked.items():
        w.unchecked.append(f"the capture on {node}")
        w.why_unchecked.setdefault(node, set()).add(why)
    evidence = [_evidence(reading, src.node)]
    cause = reading.cause
    if cause is not None and cause.code == C.NODE_FIREWALL_DROPS:
        cause = await _quote_rule(sw, cause, path, protocol, e.port, evidence)
    if cause is not None:
        sw.add(
            [
                Candidate(
                    cause.code, cause.hop, cause.summary, cause.node, remediation(cause.code, **cause.facts, port=str(e.port))
                )
            ]
        )
        guess = u.guess or (sw.lookup_timed_out if cause.code == C.PACKET_LOSS else None)
        if guess is not None and guess in w.candidates:
            # The trace named the cause the DNS failure stood in for (a lookup that timed out while
            # every server answered directly is the loss the trace measured).
            w.candidates.remove(guess)
    status = StepStatus.FAIL if cause is not None or reading.stop is not None else StepStatus.PASS
    if status == StepStatus.PASS and (reading.unchecked or all(r.seen is None for r in reading.rows)):
        status = StepStatus.WARN
    w.record(f"trace {src.name} → {e.pod.name if e.pod else e.ip}:{e.port}", status, _summary(reading), evidence, started, e.node)
    mtu = src_pod.value.eth0.mtu if src_pod.value is not None and src_pod.value.eth0 is not None else 0
    if case.trace == "path" and path.remote and reading.reached and cause is None and mtu > 576:
        await _large_probe(sw, u, path, plan, mtu)
    return reading


async def _large_probe(sw: SourceWalk, u: Unexplained, path: TracePath, small: TracePlan, mtu: int) -> None:
    """The same path again with one don't-fragment UDP datagram as large as the source pod's MTU: a
    node network that carries less than the overlay needs lets small packets through, not this one."""
    w, src, e = sw.w, sw.src, u.endpoint
    started = time.monotonic()
    port = marked_port()
    size = mtu - 28  # the IP and UDP headers
    probe = replace(small.probe, protocol="UDP", source_port=port, count=1, timeout_ms=500, payload=b"", size=size)
    plan = replace(small, probe=probe, max_duration_ms=1500, retransmit_probes=0)
    run = await w.obs.trace(plan)
    node_ips = {name: ref.ip for name, ref in sw.case.nodes.items()}
    big = judge(path, run.captures, port, run.probes, protocol="UDP", node_ips=node_ips, unchecked=run.unchecked)
    cause = mtu_cause(path, big, mtu)
    if cause is not None:
        sw.add([Candidate(cause.code, cause.hop, cause.summary, cause.node, remediation(cause.code, **cause.facts))])
    summary = cause.summary if cause is not None else f"a {mtu}-byte datagram with don't-fragment crosses the path"
    w.record(
        f"trace {src.name} → {e.pod.name if e.pod else e.ip}:{e.port} ({mtu} bytes, DF)",
        StepStatus.FAIL if cause is not None else StepStatus.PASS,
        summary,
        [_evidence(big, src.node)],
        started,
        e.node,
    )


async def _quote_rule(sw: SourceWalk, cause: Cause, path: TracePath, protocol: str, port: int, evidence: list[Evidence]) -> Cause:
    """The node's filter view of what the trace saw dropped: the rule is quoted when the agent shows it."""
    nodes = sw.case.nodes
    other = path.source_node if cause.node == path.destination_node else path.destination_node
    src_ip, dst_ip = (nodes[n].ip if n in nodes else "" for n in (other, cause.node))
    if not src_ip or not dst_ip:
        return cause
    overlay = path.overlay_port
    device = cause.facts.get("device", "eth0")
    view = await sw.w.obs.filter_state(
        cause.node,
        src=src_ip,
        dst=dst_ip,
        protocol="UDP" if overlay else protocol,
        dport=overlay or port,
        interfaces=(device,),
    )
    if view.value is None or not view.value.drops:
        return cause
    rule = view.value.drops[0]
    evidence.append(ev("filter", f"{cause.node}: {rule}", cause.node, drops=list(view.value.drops)))
    return replace(cause, summary=f"{cause.summary} ({rule})", facts={**cause.facts, "rule": rule})


async def _nothing(node: str) -> Observed[RouteLookup]:
    return Observed(node)


def _device(lookup: RouteLookup | None) -> str:
    return lookup.route.device if lookup is not None and lookup.route is not None else ""


def _summary(reading: TraceReading) -> str:
    if reading.cause is not None:
        text = reading.cause.summary
    elif reading.stop is not None:
        last = reading.stop.last_seen.point.label if reading.stop.last_seen else "the source pod"
        text = f"the {reading.stop.direction} stops after {last}, before {reading.stop.first_unseen.point.label}"
    elif reading.reached:
        text = "the probe was seen at every point, there and back"
    else:
        text = "the probe could not be followed"
    extra = [*reading.nat, *([reading.asymmetric] if reading.asymmetric else [])]
    return "; ".join([text, *extra])


def _evidence(reading: TraceReading, node: str | None) -> Evidence:
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
    )


async def _trace(sw: SourceWalk) -> bool:
    for u in _wanted(sw):
        await trace_endpoint(sw, u)
    return True


STEP = SourceStep(
    "trace",
    Hop.UNDERLAY,
    frozenset({Need.TRACE, Need.LOCATE_POD, Need.NODE_FACTS, Need.ROUTE}),
    _trace,
)
