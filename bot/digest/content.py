"""Building a digest from a sweep and the history, and diffing it against the previous digest. Pure.

Every section turns facts into `DigestItem`s with a stable key; problems are then compared with the
previous digest's stored JSON (`Digest.as_json`): a problem is `new` or `still`, and a problem of the
previous digest that is no longer seen is `gone`. A problem that could not be checked this time (its
node's agent did not answer, the API could not be read) is neither gone nor new: it is carried over
and marked unchecked, so an outage never reads as a fix.

This module is longer than the project's ~600 lines: each section's facts-to-items rules sit beside
the diff that compares them, which reads best in one place.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bot.digest.models import (
    Change,
    Digest,
    DigestItem,
    DigestSection,
    GoneItem,
    HistorySummary,
    LinkMtu,
    NodeSweep,
    PodMtuSample,
    SectionName,
    ServicePortState,
    ServiceState,
    Sweep,
)
from bot.digest.nodeports import nodeport_items
from bot.playbook.observations import not_inspected

CONNTRACK_WARN_RATIO = 0.8
"""A node's conntrack table at or above this share of its limit is a problem."""
CONNTRACK_FULL_RATIO = 0.99
"""…and at or above this share it is at the limit: new flows are being dropped."""
STALE_NAT_LIMIT = 3
"""Endpoints shown per side in one stale kube-proxy line."""


def _n(value: int) -> str:
    return f"{value:,}"


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def previous_items(previous: Mapping[str, Any] | None) -> dict[str, dict[str, Mapping[str, Any]]]:
    """section name → item key → the item's stored JSON, from a previous digest's content."""
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    if not previous:
        return out
    for section in previous.get("sections") or []:
        if not isinstance(section, Mapping):
            continue
        items = {
            str(item["key"]): item
            for item in section.get("items") or []
            if isinstance(item, Mapping) and isinstance(item.get("key"), str)
        }
        out[str(section.get("name"))] = items
    return out


def previous_time(previous: Mapping[str, Any] | None) -> datetime | None:
    """When the previous digest was generated (None without one, or when unreadable)."""
    if not previous or not isinstance(previous.get("generated_at"), str):
        return None
    try:
        return datetime.fromisoformat(previous["generated_at"])
    except ValueError:
        return None


def diff_section(
    name: SectionName,
    summary: str,
    items: Sequence[DigestItem],
    previous: Mapping[str, Mapping[str, Any]],
    *,
    unchecked: Callable[[Mapping[str, Any]], bool] = lambda data: False,
) -> DigestSection:
    """Mark each problem new or still and list the previous problems that are gone.

    A previous problem not seen now whose data `unchecked` says was not looked at this time (its node's
    agent did not answer, its pod was not sampled, the API was down) is carried over as an unchecked
    problem instead of being reported gone.
    """
    previous_problems = {key: item for key, item in previous.items() if item.get("problem")}
    marked: list[DigestItem] = []
    seen: set[str] = set()
    for item in items:
        if not item.problem:
            marked.append(item)
            continue
        seen.add(item.key)
        change = Change.STILL if item.key in previous_problems else Change.NEW
        marked.append(DigestItem(item.key, item.text, True, change, item.data))
    gone: list[GoneItem] = []
    for key, old in previous_problems.items():
        if key in seen:
            continue
        data = old.get("data") if isinstance(old.get("data"), Mapping) else {}
        assert isinstance(data, Mapping)
        text = str(old.get("text") or key)
        if unchecked(data):
            carried = {**data, "unchecked": True}
            plain = text.removeprefix("not checked this time, last seen: ")
            marked.append(DigestItem(key, f"not checked this time, last seen: {plain}", True, Change.STILL, carried))
            continue
        gone.append(GoneItem(key, text))
    return DigestSection(name, summary, tuple(marked), tuple(gone))


# ------------------------------------------------------------------------------------------ agents


def agent_items(sweep: Sweep) -> tuple[str, list[DigestItem]]:
    """One problem per node whose agent did not answer."""
    total = len(sweep.nodes)
    answered = sum(1 for n in sweep.nodes if n.agent_ok)
    items = [
        DigestItem(
            f"agent:{n.name}",
            f"{n.name}: the agent did not answer ({n.agent_error or 'no reason given'}); its checks are missing",
            True,
            data={"node": n.name, "error": n.agent_error},
        )
        for n in sorted(sweep.nodes, key=lambda n: n.name)
        if not n.agent_ok
    ]
    summary = f"{answered} of {_plural(total, 'agent')} answered"
    if total == 0:
        summary = "no agents are known: check the agent DaemonSet (or the lab's agent list)"
    return summary, items


# --------------------------------------------------------------------------------------- conntrack


def conntrack_items(sweep: Sweep, previous: Mapping[str, Mapping[str, Any]]) -> tuple[str, list[DigestItem]]:
    """Every node's conntrack usage, worst first; problems: near the limit, or new drops/insert failures."""
    rows = [n for n in sweep.nodes if n.conntrack is not None]
    rows.sort(key=lambda n: (-(n.conntrack.ratio if n.conntrack else 0.0), -(n.conntrack.count if n.conntrack else 0), n.name))
    items: list[DigestItem] = []
    for node in rows:
        usage = node.conntrack
        assert usage is not None
        key = f"conntrack:{node.name}"
        old = previous.get(key)
        old_data = old.get("data") if old is not None and isinstance(old.get("data"), Mapping) else None
        new_drop = usage.drop - int(old_data.get("drop", 0)) if old_data is not None else None
        new_failed = usage.insert_failed - int(old_data.get("insert_failed", 0)) if old_data is not None else None
        at_limit = usage.max > 0 and usage.ratio >= CONNTRACK_FULL_RATIO
        near = usage.max > 0 and usage.ratio >= CONNTRACK_WARN_RATIO
        rising = (new_drop or 0) > 0 or (new_failed or 0) > 0
        text = f"{node.name}: {_n(usage.count)}/{_n(usage.max)} ({usage.ratio:.0%})"
        if at_limit:
            text += " at the limit: new flows are dropped"
        elif near:
            text += " near the limit"
        counters = []
        for label, total, delta in (("insert_failed", usage.insert_failed, new_failed), ("drop", usage.drop, new_drop)):
            if total or delta:
                counters.append(f"{label} {_n(total)}" + (f" (+{_n(delta)})" if delta else ""))
        if counters:
            text += "; " + ", ".join(counters)
        data = {
            "node": node.name,
            "count": usage.count,
            "max": usage.max,
            "ratio": round(usage.ratio, 4),
            "at_limit": at_limit,
            "insert_failed": usage.insert_failed,
            "drop": usage.drop,
            "early_drop": usage.early_drop,
        }
        items.append(DigestItem(key, text, near or rising, data=data))
    if not rows:
        return "no node reported its conntrack table", items
    worst = rows[0]
    assert worst.conntrack is not None
    summary = f"fullest: {worst.name} at {worst.conntrack.ratio:.0%} of {_n(worst.conntrack.max)}"
    return summary, items


# -------------------------------------------------------------------------------------- forwarding


def forwarding_items(sweep: Sweep) -> tuple[str, list[DigestItem]]:
    """Nodes with ip_forward off, a FORWARD policy of DROP, or FORWARD rules that drop pod traffic."""
    items: list[DigestItem] = []
    checked = 0
    for node in sorted(sweep.nodes, key=lambda n: n.name):
        if not node.agent_ok:
            continue
        checked += 1
        if node.ip_forward is False:
            items.append(
                DigestItem(
                    f"forwarding:{node.name}:ip_forward",
                    f"{node.name}: net.ipv4.ip_forward is 0, so the node routes no pod traffic",
                    True,
                    data={"node": node.name},
                )
            )
        if node.forward_policy and node.forward_policy.upper() == "DROP":
            items.append(
                DigestItem(
                    f"forwarding:{node.name}:forward_policy",
                    f"{node.name}: the filter FORWARD chain has policy DROP",
                    True,
                    data={"node": node.name, "policy": node.forward_policy},
                )
            )
        if node.forward_drops:
            items.append(
                DigestItem(
                    f"forwarding:{node.name}:forward_rules",
                    f"{node.name}: FORWARD rules drop pod traffic between nodes: {'; '.join(node.forward_drops[:2])}",
                    True,
                    data={"node": node.name, "rules": list(node.forward_drops)},
                )
            )
    if not items:
        return f"forwarding on and FORWARD accepting on all {_plural(checked, 'node')} checked", items
    return f"{_plural(len(items), 'problem')} on {_plural(checked, 'node')} checked", items


# --------------------------------------------------------------------------------------------- mtu


def _by_value(pairs: Iterable[tuple[str, int]]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = defaultdict(list)
    for who, mtu in pairs:
        groups[mtu].append(who)
    return dict(groups)


def _spread(groups: Mapping[int, Sequence[str]], limit: int = 4) -> str:
    parts = []
    for mtu in sorted(groups):
        names = sorted(groups[mtu])
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        parts.append(f"{mtu} on {shown}")
    return "; ".join(parts)


def _overlay_limit(node: NodeSweep) -> LinkMtu | None:
    return min(node.overlays, key=lambda o: o.mtu) if node.overlays else None


def mtu_items(sweep: Sweep) -> tuple[str, list[DigestItem]]:
    """MTU inconsistencies: overlays or bridges that differ between nodes, veths and pods above the overlay."""
    items: list[DigestItem] = []
    nodes = [n for n in sweep.nodes if n.agent_ok]
    by_name = {n.name: n for n in nodes}
    for kind in ("overlay", "bridge"):
        per_device: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for node in nodes:
            for link in node.overlays if kind == "overlay" else node.bridges:
                per_device[link.name].append((node.name, link.mtu))
        for device, pairs in sorted(per_device.items()):
            groups = _by_value(pairs)
            if len(groups) > 1:
                items.append(
                    DigestItem(
                        f"mtu:{kind}:{device}",
                        f"{kind} {device} MTU differs between nodes: {_spread(groups)}",
                        True,
                        data={"device": device, "mtus": {str(k): sorted(v) for k, v in groups.items()}},
                    )
                )
    for node in sorted(nodes, key=lambda n: n.name):
        overlay = _overlay_limit(node)
        if overlay is None:
            continue
        for bridge in node.bridges:
            if bridge.mtu > overlay.mtu:
                items.append(
                    DigestItem(
                        f"mtu:node:{node.name}:bridge:{bridge.name}",
                        f"{node.name}: bridge {bridge.name} MTU {bridge.mtu} is above {overlay.name} {overlay.mtu}",
                        True,
                        data={"node": node.name, "bridge": bridge.name, "mtu": bridge.mtu, "overlay_mtu": overlay.mtu},
                    )
                )
        above = sorted(p.name for p in node.bridge_ports if p.kind == "veth" and p.mtu > overlay.mtu)
        if above:
            items.append(
                DigestItem(
                    f"mtu:node:{node.name}:veths",
                    f"{node.name}: {_plural(len(above), 'pod veth')} above {overlay.name} {overlay.mtu}: "
                    + ", ".join(above[:4])
                    + (" …" if len(above) > 4 else ""),
                    True,
                    data={"node": node.name, "veths": above, "overlay_mtu": overlay.mtu},
                )
            )
    items.extend(_pod_mtu_items(sweep.pods, by_name))
    pod_groups = _by_value((p.key, p.eth0_mtu) for p in sweep.pods)
    if len(pod_groups) > 1:
        items.append(
            DigestItem(
                "mtu:pods:mixed",
                f"sampled pods use different MTUs: {_spread(pod_groups, limit=2)}",
                True,
                data={"mtus": {str(k): sorted(v) for k, v in pod_groups.items()}},
            )
        )
    problems = sum(1 for i in items if i.problem)
    sample = f"{len(sweep.pods)} of {_plural(sweep.pods_total, 'pod')} sampled"
    if problems:
        return f"{_plural(problems, 'inconsistency', 'inconsistencies')} ({sample})", items
    shapes = sorted(
        {f"{o.name} {o.mtu}" for n in nodes for o in n.overlays} | {f"{b.name} {b.mtu}" for n in nodes for b in n.bridges}
    )
    pods = ", ".join(str(m) for m in sorted(pod_groups)) or "none sampled"
    return f"consistent: pods {pods} ({sample}); " + (", ".join(shapes) or "no bridge or overlay"), items


def _pod_mtu_items(pods: Sequence[PodMtuSample], nodes: Mapping[str, NodeSweep]) -> list[DigestItem]:
    items = []
    for pod in sorted(pods, key=lambda p: p.key):
        node = nodes.get(pod.node)
        overlay = _overlay_limit(node) if node is not None else None
        reasons = []
        if overlay is not None and pod.eth0_mtu > overlay.mtu:
            reasons.append(f"above {overlay.name} {overlay.mtu} on {pod.node}")
        if pod.host_veth_mtu and pod.eth0_mtu != pod.host_veth_mtu:
            reasons.append(f"its host veth {pod.host_veth or '?'} has {pod.host_veth_mtu}")
        if reasons:
            items.append(
                DigestItem(
                    f"mtu:pod:{pod.key}",
                    f"pod {pod.key}: eth0 MTU {pod.eth0_mtu}, " + " and ".join(reasons) + "; large packets are lost",
                    True,
                    data={
                        "node": pod.node,
                        "pod": pod.key,
                        "mtu": pod.eth0_mtu,
                        "host_veth_mtu": pod.host_veth_mtu,
                        "overlay_mtu": overlay.mtu if overlay else None,
                    },
                )
            )
    return items


# ---------------------------------------------------------------------------------------- services


def in_scope(namespace: str, namespaces: Sequence[str]) -> bool:
    """Whether a namespace is in a digest's scope (an empty scope is every namespace)."""
    return not namespaces or namespace in namespaces


def _selector_text(selector: Mapping[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) if selector else ""


def endpoint_items(sweep: Sweep, namespaces: Sequence[str]) -> tuple[str, list[DigestItem]]:
    """Services in scope with ports but no ready endpoint."""
    items: list[DigestItem] = []
    checked = 0
    for service in sorted(sweep.services, key=lambda s: s.key):
        if service.type == "ExternalName" or not service.ports or not in_scope(service.namespace, namespaces):
            continue
        checked += 1
        routed = {e for p in service.ports for e in p.routed}
        if routed:
            continue
        not_ready = {e for p in service.ports for e in p.not_ready}
        if not_ready:
            why = f"{_plural(len(not_ready), 'endpoint')}, none ready"
        elif service.selector:
            why = f"no endpoints: selector {_selector_text(service.selector)} matches no ready pod"
        else:
            why = "no selector and no endpoints"
        items.append(
            DigestItem(
                f"endpoints:{service.key}",
                f"{service.key}: {why}",
                True,
                data={
                    "service": service.key,
                    "selector": dict(service.selector) if service.selector else None,
                    "not_ready": sorted(not_ready),
                },
            )
        )
    if sweep.api_error:
        return f"not checked: {sweep.api_error}", items
    if not items:
        return f"all {_plural(checked, 'service')} have ready endpoints", items
    return f"{len(items)} of {_plural(checked, 'service')}", items


def _nat_key(vip: str, port: int, protocol: str) -> tuple[str, int, str]:
    with contextlib.suppress(ValueError):
        vip = str(ipaddress.ip_address(vip))
    return vip, port, protocol.upper()


def _short(endpoints: Iterable[str]) -> str:
    listed = sorted(endpoints)
    if not listed:
        return "nothing"
    return ", ".join(listed[:STALE_NAT_LIMIT]) + (
        f" and {len(listed) - STALE_NAT_LIMIT} more" if len(listed) > STALE_NAT_LIMIT else ""
    )


def _unread_key(data: Mapping[str, Any]) -> tuple[Any, ...]:
    return (data.get("node"), data.get("service"), data.get("port"), str(data.get("protocol", "")).upper())


def kube_proxy_unread(sweep: Sweep) -> frozenset[tuple[Any, ...]]:
    """(node, service, port, protocol) of every service port whose rules a node could not read: its
    NAT answer failed, or the rules are in a layout kubereach does not read yet. A problem of the
    previous digest there was not looked at this time: it is carried over, not gone."""
    found: set[tuple[Any, ...]] = set()
    for node in sweep.nodes:
        if not node.agent_ok:
            continue
        unread = None if node.nat is None else {_nat_key(p.vip, p.port, p.protocol) for p in node.nat if p.unreadable}
        for service in sweep.services:
            for port in service.ports if service.cluster_ip else ():
                if unread is None or _nat_key(service.cluster_ip or "", port.port, port.protocol) in unread:
                    found.add((node.name, service.key, port.port, port.protocol.upper()))
    return frozenset(found)


def kube_proxy_items(sweep: Sweep, namespaces: Sequence[str]) -> tuple[str, list[DigestItem]]:
    """Nodes whose kube-proxy NAT rules differ from the API's ready endpoints, per service port.

    When a port has no ready endpoint, kube-proxy routes to its serving terminating ones: those are
    then what the rules should hold.
    """
    items: list[DigestItem] = []
    compared_nodes = 0
    ports = [
        (service, port)
        for service in sorted(sweep.services, key=lambda s: s.key)
        if service.cluster_ip and service.type != "ExternalName" and in_scope(service.namespace, namespaces)
        for port in service.ports
    ]
    skipped: list[str] = []
    for node in sorted(sweep.nodes, key=lambda n: n.name):
        if not node.agent_ok:
            continue
        if node.nat is None:
            skipped.append(f"{node.name} ({node.nat_error or 'rules unreadable'})")
            continue
        if (foreign := not_inspected(node.name, node.dataplane)) is not None:
            skipped.append(foreign)
            continue
        if not node.nat and node.proxy_mode not in ("iptables", "nftables"):
            skipped.append(f"{node.name} (kube-proxy mode {node.proxy_mode or 'unknown'})")
            continue
        compared_nodes += 1
        programmed = {_nat_key(p.vip, p.port, p.protocol): p for p in node.nat}
        unread = sum(1 for p in node.nat if p.unreadable)
        if unread:
            skipped.append(f"{_plural(unread, 'service port')} on {node.name} (a layout kubereach does not read yet)")
        for service, port in ports:
            assert service.cluster_ip is not None
            label = f"{service.key}:{port.port}/{port.protocol}"
            key = f"kube_proxy:{node.name}:{label}"
            expected = set(port.routed)
            found = programmed.get(_nat_key(service.cluster_ip, port.port, port.protocol))
            data: dict[str, Any] = {"node": node.name, "service": service.key, "port": port.port, "protocol": port.protocol}
            if found is None:
                items.append(
                    DigestItem(
                        key,
                        f"{node.name}: {label} ({service.cluster_ip}) is not programmed: kube-proxy is down or failing there",
                        True,
                        data={**data, "kind": "missing", "expected": sorted(expected)},
                    )
                )
                continue
            if found.unreadable:
                continue  # neither stale nor missing: the rules could not be read (counted in `skipped`)
            actual = set(found.endpoints)
            if actual != expected:
                items.append(
                    DigestItem(
                        key,
                        f"{node.name}: {label} sends to {_short(actual)}; the API has {_short(expected)} "
                        + ("ready" if port.ready or not expected else "serving (terminating)"),
                        True,
                        data={**data, "kind": "stale", "programmed": sorted(actual), "expected": sorted(expected)},
                    )
                )
    note = f"; not compared: {', '.join(skipped)}" if skipped else ""
    if sweep.api_error:
        return f"not checked: {sweep.api_error}", items
    if not items:
        return f"rules match the API on {_plural(compared_nodes, 'node')} ({_plural(len(ports), 'service port')}){note}", items
    stale_nodes = len({i.data["node"] for i in items})
    return f"{_plural(len(items), 'stale service port')} on {_plural(stale_nodes, 'node')}{note}", items


# ----------------------------------------------------------------------------------------- history


def investigation_items(history: HistorySummary) -> tuple[str, list[DigestItem]]:
    """How many investigations since the last digest, by verdict."""
    items = [
        DigestItem(f"verdict:{v.code}", f"{v.code} ×{v.count}", False, data={"code": v.code, "count": v.count})
        for v in history.verdicts
    ]
    if history.investigations == 0:
        return "none", items
    return f"{_plural(history.investigations, 'investigation')}", items


def recurring_items(history: HistorySummary) -> tuple[str, list[DigestItem]]:
    """Same verdict on the same node, or same source→target, at least twice in the window."""
    items = [
        DigestItem(
            f"recurring:{r.kind}:{r.label}",
            f"{r.label}: {r.count} times in {history.window_days} days, last {r.last_at:%Y-%m-%d %H:%M} UTC ({r.last_id})",
            True,
            data={"kind": r.kind, "count": r.count, "last_id": r.last_id, "verdict": r.verdict},
        )
        for r in history.recurring
    ]
    return ("nothing recurs" if not items else _plural(len(items), "recurring problem")), items


def unresolved_items(history: HistorySummary) -> tuple[str, list[DigestItem]]:
    """Faults found in the window that nobody marked resolved (newest first, bounded)."""
    items = []
    for u in history.unresolved:
        where = f" on {u.node}" if u.node else ""
        items.append(
            DigestItem(
                f"unresolved:{u.id}",
                f"{u.id} {u.verdict}{where}: {u.question} (asked by {u.asked_by}, {u.started_at:%Y-%m-%d})",
                True,
                data={
                    "id": u.id,
                    "verdict": u.verdict,
                    "node": u.node,
                    "channel": u.channel,
                    "thread_ts": u.thread_ts,
                },
            )
        )
    if history.unresolved_total == 0:
        return f"none in {history.window_days} days", items
    more = history.unresolved_total - len(items)
    return f"{history.unresolved_total} in {history.window_days} days" + (f" ({more} more not shown)" if more > 0 else ""), items


# ------------------------------------------------------------------------------------------ digest


def build_digest(
    sweep: Sweep,
    history: HistorySummary | None,
    previous: Mapping[str, Any] | None,
    *,
    namespaces: Sequence[str] = (),
    generated_at: datetime | None = None,
) -> Digest:
    """The digest of one sweep and the history, each problem marked against `previous` (stored JSON)."""
    before = previous_items(previous)
    silent_nodes = frozenset(n.name for n in sweep.nodes if not n.agent_ok)
    sampled = frozenset(p.key for p in sweep.pods)
    api_down = sweep.api_error is not None

    def not_looked_at(data: Mapping[str, Any]) -> bool:
        pod = data.get("pod")
        return data.get("node") in silent_nodes or (isinstance(pod, str) and pod not in sampled)

    nat_unread = kube_proxy_unread(sweep)

    def section(name: SectionName, built: tuple[str, list[DigestItem]], *, all_unchecked: bool = False) -> DigestSection:
        summary, items = built
        unchecked = (lambda data: True) if all_unchecked else not_looked_at
        if name == SectionName.KUBE_PROXY and not all_unchecked:
            unchecked = lambda data: not_looked_at(data) or _unread_key(data) in nat_unread  # noqa: E731
        return diff_section(name, summary, items, before.get(name.value, {}), unchecked=unchecked)

    sections = [
        section(SectionName.AGENTS, agent_items(sweep)),
        section(SectionName.CONNTRACK, conntrack_items(sweep, before.get(SectionName.CONNTRACK.value, {}))),
        section(SectionName.FORWARDING, forwarding_items(sweep)),
        section(SectionName.MTU, mtu_items(sweep)),
        section(SectionName.ENDPOINTS, endpoint_items(sweep, namespaces), all_unchecked=api_down),
        section(SectionName.KUBE_PROXY, kube_proxy_items(sweep, namespaces), all_unchecked=api_down),
        section(SectionName.NODEPORTS, nodeport_items(sweep, namespaces), all_unchecked=api_down),
    ]
    if history is None:
        for name in (SectionName.INVESTIGATIONS, SectionName.RECURRING, SectionName.UNRESOLVED):
            sections.append(section(name, ("history not available", []), all_unchecked=True))
    else:
        sections.append(section(SectionName.INVESTIGATIONS, investigation_items(history)))
        sections.append(section(SectionName.RECURRING, recurring_items(history)))
        sections.append(section(SectionName.UNRESOLVED, unresolved_items(history)))
    return Digest(
        cluster=sweep.cluster,
        generated_at=generated_at or sweep.taken_at,
        since=previous_time(previous),
        namespaces=tuple(namespaces),
        sections=tuple(sections),
    )


ServiceFacts = tuple[str, str, str | None, str, Mapping[str, str] | None, Sequence[tuple[str | None, int, str]]]
"""(namespace, name, cluster_ip, type, selector, ports as (name, port, protocol)) of one Service."""
EndpointFacts = tuple[str, bool, Sequence[tuple[str | None, int | None, str]], bool]
"""(ip, ready, ports as (name, port, protocol), serving and terminating) of one EndpointSlice address."""


def service_states(
    services: Iterable[ServiceFacts], endpoints: Mapping[str, Sequence[EndpointFacts]]
) -> tuple[ServiceState, ...]:
    """Services with their ready and not-ready ``ip:port`` per port, from plain API facts.

    `services`: (namespace, name, cluster_ip, type, selector, ports as (name, port, protocol));
    `endpoints`: ``namespace/name`` → addresses as (ip, ready, ports as (name, port, protocol),
    whether it is serving and terminating).
    An endpoint serves a service port when its slice has a port of the same name and protocol.
    """
    out = []
    for namespace, name, cluster_ip, kind, selector, ports in services:
        addresses = endpoints.get(f"{namespace}/{name}", ())
        states = []
        for port_name, number, protocol in ports:
            ready: set[str] = set()
            not_ready: set[str] = set()
            terminating: set[str] = set()
            for ip, is_ready, slice_ports, serving_terminating in addresses:
                target = next(
                    (p for n, p, proto in slice_ports if (n or None) == (port_name or None) and proto == protocol and p), None
                )
                if target is None:
                    continue
                (ready if is_ready else not_ready).add(f"{ip}:{target}")
                if serving_terminating and not is_ready:
                    terminating.add(f"{ip}:{target}")
            states.append(
                ServicePortState(
                    port_name,
                    number,
                    protocol,
                    tuple(sorted(ready)),
                    tuple(sorted(not_ready - ready)),
                    tuple(sorted(terminating - ready)),
                )
            )
        out.append(ServiceState(namespace, name, cluster_ip, kind, selector, tuple(states)))
    return tuple(out)
