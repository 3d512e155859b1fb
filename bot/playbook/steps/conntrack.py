"""The conntrack hop: does an entry on the source node still steer this flow to a vanished endpoint."""

from __future__ import annotations

import time

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ConntrackEntry
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, Need, SourceStep, SourceWalk
from bot.playbook.steps.evidence import ev


def _carries_traffic(entry: ConntrackEntry) -> bool:
    """An entry that still steers packets: a replied UDP flow, or an established TCP connection."""
    if not entry.replied:
        return False
    return entry.protocol.lower() != "tcp" or entry.state.upper() in ("ESTABLISHED", "SYN_RECV")


async def check_conntrack(sw: SourceWalk) -> None:
    w, src, case, svc = sw.w, sw.src, sw.case, sw.case.service
    if svc is None or src.node is None or case.port is None or not src.ip:
        return
    started = time.monotonic()
    observed = await w.obs.conntrack(
        src.node, protocol=case.protocol, orig_src=src.ip, orig_dst=svc.cluster_ip, orig_dport=case.port
    )
    if observed.value is None:
        if observed.unreachable:
            w.unreachable(observed, "conntrack")
        return
    current = {e.ip for e in case.endpoints} | {svc.cluster_ip}
    stale = [e for e in observed.value.entries if _carries_traffic(e) and e.reply_src not in current]
    evidence = [
        ev(
            "conntrack",
            f"{observed.value.total} entries for {src.ip} → {svc.cluster_ip}:{case.port}/{case.protocol} on {src.node}",
            src.node,
            entries=[
                {
                    "orig": f"{e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}",
                    "reply_src": f"{e.reply_src}:{e.reply_sport}",
                    "state": e.state,
                    "timeout": e.timeout,
                    "status": list(e.status),
                }
                for e in observed.value.entries[:20]
            ],
        )
    ]
    if not stale:
        w.record(
            f"source {src.name}: conntrack",
            StepStatus.PASS,
            "no conntrack entry maps this flow to a vanished endpoint",
            evidence,
            started,
            src.node,
        )
        return
    e = stale[0]
    summary = (
        f"a conntrack entry on {src.node} still maps {e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}/{case.protocol} to {e.reply_src}, "
        f"which is no endpoint of {svc.key} any more ({e.timeout}s left)"
    )
    w.add(
        Candidate(
            C.CONNTRACK_STALE_ENTRY,
            Hop.SERVICE_NAT,
            summary,
            src.node,
            remediation(C.CONNTRACK_STALE_ENTRY, node=src.node, protocol=case.protocol, vip=svc.cluster_ip, stale=e.reply_src),
            src.key,
        )
    )
    w.record(f"source {src.name}: conntrack", StepStatus.FAIL, summary, evidence, started, src.node)


async def _conntrack(sw: SourceWalk) -> bool:
    await check_conntrack(sw)
    return True


STEP = SourceStep("conntrack", Hop.SERVICE_NAT, frozenset({Need.CONNTRACK}), _conntrack)
