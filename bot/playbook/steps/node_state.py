"""A node's own state: conntrack room, IP forwarding, and conntrack entries that outlived their endpoint. Shared by the hops."""

from __future__ import annotations

from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ConntrackEntry, ConntrackView, NodeFacts
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate
from bot.playbook.steps.evidence import ev

CONNTRACK_FULL_RATIO = 0.98


def node_checks(facts: NodeFacts, hop: Hop, *, forwards: bool) -> list[Candidate]:
    found = []
    node = facts.node
    if facts.conntrack_max and facts.conntrack_count >= CONNTRACK_FULL_RATIO * facts.conntrack_max:
        found.append(
            Candidate(
                C.CONNTRACK_TABLE_FULL,
                hop,
                f"the conntrack table on {node} is full ({facts.conntrack_count}/{facts.conntrack_max}): new flows are dropped",
                node,
                remediation(C.CONNTRACK_TABLE_FULL, node=node),
            )
        )
    if forwards and not facts.ip_forward:
        found.append(
            Candidate(
                C.IP_FORWARDING_DISABLED,
                hop,
                f"net.ipv4.ip_forward is 0 on {node}: it does not forward pod traffic",
                node,
                remediation(C.IP_FORWARDING_DISABLED, node=node),
            )
        )
    return found


def facts_evidence(facts: NodeFacts) -> Evidence:
    overlays = (
        ", ".join(f"{o.link.name} {'up' if o.link.up else 'DOWN'} mtu {o.link.mtu} vni {o.vni}" for o in facts.overlays) or "none"
    )
    return ev(
        "node",
        f"{facts.node}: ip_forward={int(facts.ip_forward)}, conntrack {facts.conntrack_count}/{facts.conntrack_max} (insert_failed {facts.insert_failed}, drop {facts.drop}), "
        f"kube-proxy {facts.proxy_mode or 'none'}, overlays: {overlays}",
        facts.node,
        ip_forward=facts.ip_forward,
        conntrack_count=facts.conntrack_count,
        conntrack_max=facts.conntrack_max,
        insert_failed=facts.insert_failed,
        drop=facts.drop,
        proxy_mode=facts.proxy_mode,
        overlays=[{"name": o.link.name, "up": o.link.up, "mtu": o.link.mtu, "vni": o.vni} for o in facts.overlays],
    )


def carries_traffic(entry: ConntrackEntry) -> bool:
    """An entry that still steers packets: a replied UDP flow, or an established TCP connection."""
    if not entry.replied:
        return False
    return entry.protocol.lower() != "tcp" or entry.state.upper() in ("ESTABLISHED", "SYN_RECV")


def stale_entries(
    view: ConntrackView, current: set[str], flow: str, node: str | None
) -> tuple[list[ConntrackEntry], list[Evidence]]:
    """The entries that still steer traffic to an address in none of `current`, and the evidence of the read."""
    stale = [e for e in view.entries if carries_traffic(e) and e.reply_src not in current]
    listed = [
        {
            "orig": f"{e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}",
            "reply_src": f"{e.reply_src}:{e.reply_sport}",
            "state": e.state,
            "timeout": e.timeout,
            "status": list(e.status),
        }
        for e in view.entries[:20]
    ]
    return stale, [ev("conntrack", f"{view.total} entries for {flow} on {node}", node, entries=listed)]
