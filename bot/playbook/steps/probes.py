"""The probes: can the source pod reach the VIP and every endpoint; for each it cannot, walk the path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence

from bot.playbook.case import EndpointRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.observations import Observed, ProbeView
from bot.playbook.steps.base import Need, SourceStep, SourceWalk
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.path import endpoint_path

DENIED_PROBE_TIMEOUT_MS = 300
"""How long a probe waits when the NetworkPolicies read from the API already deny the flow.

The probe then confirms the deny rather than discovers it: an enforced deny is silence (Calico,
Cilium and the lab drop; a REJECT answers even sooner), so waiting for the full `PROBE_TIMEOUT_MS`
adds nothing but time, while a flow the CNI does not enforce still connects within a round trip
(its probe's outcome, "connected", is in the evidence)."""


Planned = tuple[str, str, int, int | None]
"""A probe: (label, target, port, how long it waits in ms; None: the observer's default)."""


def _plan(sw: SourceWalk, endpoints: Sequence[EndpointRef], denied: set[str]) -> list[Planned]:
    src, case = sw.src, sw.case
    if src.node is None or not src.ip:
        return []
    # A probe to an endpoint the policies deny (or to the VIP when they deny every endpoint) only
    # confirms the deny, so it waits DENIED_PROBE_TIMEOUT_MS.
    every_denied = bool(endpoints) and all(e.ip in denied for e in endpoints)
    probes: list[Planned] = []
    if case.service is not None and case.port is not None:
        probes.append(("vip", case.service.cluster_ip, case.port, DENIED_PROBE_TIMEOUT_MS if every_denied else None))
    for e in endpoints:
        probes.append((e.ip, e.ip, e.port, DENIED_PROBE_TIMEOUT_MS if e.ip in denied else None))
    if case.target_kind in ("ip", "external") and case.target_ip and case.port:
        probes.append((case.target_ip, case.target_ip, case.port, None))
    return probes


def _send(sw: SourceWalk, probes: Sequence[Planned]) -> list[Awaitable[Observed[ProbeView]]]:
    src, obs, protocol = sw.src, sw.w.obs, sw.case.protocol
    assert src.node is not None and src.ip is not None
    return [obs.probe(src.node, pod_ip=src.ip, target=t, port=p, protocol=protocol, timeout_ms=wait) for _, t, p, wait in probes]


def send_probes_early(sw: SourceWalk) -> None:
    """Send this source's probes now, while the node steps run: the probes step then awaits the same
    calls (the observer answers identical calls once), so the probes' round trips and timeouts
    overlap the other checks instead of following them. Probes only read; an answer no step needs
    (a walk that ended earlier) is dropped."""
    sw.early_probes = [asyncio.ensure_future(call) for call in _send(sw, _plan(sw, sw.reachable, sw.denied))]
    for future in sw.early_probes:
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[object]) -> None:
    # The probes step awaits the same call and reports its failure; here it is only marked as seen.
    if not future.cancelled():
        future.exception()


async def check_reachability(sw: SourceWalk, endpoints: Sequence[EndpointRef], denied: set[str]) -> None:
    w, src, case = sw.w, sw.src, sw.case
    probes = _plan(sw, endpoints, denied)
    if not probes:
        return
    started = time.monotonic()
    results = await asyncio.gather(*_send(sw, probes))
    outcome: dict[str, ProbeView | None] = sw.probe_outcome
    evidence = []
    unprobed = []
    for (label, target, port, _wait), observed in zip(probes, results, strict=True):
        if observed.value is None:
            unprobed.append(f"{target}:{port}")
        if observed.unreachable:
            w.unreachable(observed, f"the probe {src.key} → {target}:{port}")
        outcome[label] = observed.value
        text = observed.value.outcome if observed.value else f"not probed ({observed.error})"
        evidence.append(
            ev(
                "probe",
                f"{src.key} → {target}:{port}/{case.protocol}: {text}",
                src.node,
                target=f"{target}:{port}",
                outcome=observed.value.outcome if observed.value else None,
                latency_ms=observed.value.latency_ms if observed.value else None,
            )
        )
    failed = [e for e in endpoints if (seen := outcome.get(e.ip)) is not None and not seen.ok]
    vip = outcome.get("vip")
    ok_count = len([e for e in endpoints if (seen := outcome.get(e.ip)) is not None and seen.ok])
    if not failed and (vip is None or vip.ok) and unprobed:
        w.unprobed = True
        w.record(
            f"source {src.name}: probes",
            StepStatus.WARN,
            f"{src.key} could not be probed to {', '.join(unprobed)}: not checked",
            evidence,
            started,
            src.node,
        )
        return
    if not failed and (vip is None or vip.ok):
        w.record(
            f"source {src.name}: probes",
            StepStatus.PASS,
            f"{src.key} reaches " + (f"the VIP and all {len(endpoints)} endpoints" if vip else "the target"),
            evidence,
            started,
            src.node,
        )
        return
    summary = f"{src.key} cannot reach {len(failed)} of {len(endpoints)} endpoints" + (
        f"; the VIP {vip.outcome}" if vip and not vip.ok else ""
    )
    w.record(f"source {src.name}: probes", StepStatus.FAIL, summary, evidence, started, src.node)
    paths = [endpoint_path(sw, e) for e in failed if e.ip not in denied]
    await asyncio.gather(*paths)
    if vip is not None and not vip.ok and ok_count == len(endpoints) and endpoints:
        w.record(
            f"source {src.name}: VIP vs endpoints",
            StepStatus.FAIL,
            "every endpoint answers directly but the VIP does not: the service translation fails",
            (),
            started,
            src.node,
        )


async def _probes(sw: SourceWalk) -> bool:
    await check_reachability(sw, sw.reachable, sw.denied)
    return True


STEP = SourceStep(
    "probes",
    Hop.DESTINATION_POD,
    frozenset({Need.PROBE, Need.NODE_FACTS, Need.ROUTE, Need.FILTER_STATE, Need.LOCATE_POD, Need.SOCKETS}),
    _probes,
)
