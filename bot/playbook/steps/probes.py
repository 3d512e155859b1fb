"""The probes: can the source pod reach the VIP and every endpoint; for each it cannot, walk the path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bot.playbook.case import EndpointRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.observations import ProbeView
from bot.playbook.steps.base import Need, SourceStep, SourceWalk
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.path import endpoint_path


async def check_reachability(sw: SourceWalk, endpoints: Sequence[EndpointRef], denied: set[str]) -> None:
    w, src, case = sw.w, sw.src, sw.case
    if src.node is None or not src.ip:
        return
    started = time.monotonic()
    probes: list[tuple[str, str, int]] = []
    if case.service is not None and case.port is not None:
        probes.append(("vip", case.service.cluster_ip, case.port))
    for e in endpoints:
        probes.append((e.ip, e.ip, e.port))
    if case.target_kind in ("ip", "external") and case.target_ip and case.port:
        probes.append((case.target_ip, case.target_ip, case.port))
    if not probes:
        return
    results = await asyncio.gather(
        *(w.obs.probe(src.node, pod_ip=src.ip, target=t, port=p, protocol=case.protocol) for _, t, p in probes)
    )
    outcome: dict[str, ProbeView | None] = sw.probe_outcome
    evidence = []
    unprobed = []
    for (label, target, port), observed in zip(probes, results, strict=True):
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
