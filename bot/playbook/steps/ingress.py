"""The ingress hop: how each receiving node dispatches traffic from outside the cluster that comes in
through a NodePort, an external IP or a load balancer's IP (`Case.entry`).

A client outside the cluster connects to a node's IP and NodePort (or to an address routed to the
nodes); kube-proxy on the node that receives the packet sends it to an endpoint. With
`externalTrafficPolicy: Local` it sends it only to that node's own endpoints and drops it when the node
has none ("has no local endpoints"); a cloud load balancer learns which nodes to avoid from the
service's health check node port, but a client aiming at such a node directly is dropped.

This step runs after the probes (so it can tell a reading the probes contradict from a cause): for
each receiving node it reads the agent's walk of the entry (`EntryNatAsk`: the rules on the way, the
endpoints external traffic reaches, the policy the rules show, the drop) and the conntrack entries of
the client's flow to it. The probes of the entry are `entry_probes`, sent by `steps.probes` from the
vantage node's own namespace. It applies to outside and node sources only: traffic from a pod is
short-circuited by kube-proxy to the service's cluster-wide endpoints whatever the external policy.
"""

from __future__ import annotations

from bot.playbook.case import Case, EndpointRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NatView, ProbeView
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.entry import applies, entry_address, own_traffic, probe_label, receiving_nodes
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.node_state import carries_traffic
from bot.playbook.steps.observe import ConntrackAsk, EntryNatAsk

LABEL = "ingress: node dispatch"
PROXY_MODES_READ = ("iptables", "nftables")
"""The kube-proxy modes whose rules the agent walks; any other dataplane is said to be not inspected."""


def _asks(at: At) -> tuple[Ask[object], ...]:
    case, src, entry = at.case, at.src, at.case.entry
    if not applies(at) or entry is None or src is None:
        return ()
    asks: list[Ask[object]] = []
    for node in receiving_nodes(case):
        address = entry_address(case, node)
        if address is None or (case.source_kind == "node" and own_traffic(at, node)):
            continue
        asks.append(EntryNatAsk(node, entry.kind, address, entry.port, case.protocol))
        if src.ip:
            asks.append(ConntrackAsk(node, case.protocol, src.ip, address, entry.port))
    return tuple(asks)


def _what(case: Case, address: str) -> str:
    entry = case.entry
    assert entry is not None
    kinds = {"nodeport": "NodePort", "external-ip": "external IP", "load-balancer": "load balancer IP"}
    return f"{kinds.get(entry.kind, entry.kind)} {address}:{entry.port}/{case.protocol}"


def _nat_evidence(node: str, nat: NatView, what: str, local: list[EndpointRef]) -> Evidence:
    goes = ", ".join(f"{e.ip}:{e.port}" for e in nat.endpoints) or (
        f"{nat.no_endpoints_action} (no endpoint)" if nat.no_endpoints_action else "nothing"
    )
    return ev(
        "ingress-dispatch",
        f"{node} ({nat.mode}): {what} " + (f"→ {goes}" if nat.programmed else "is not programmed"),
        node,
        mode=nat.mode,
        entry=nat.entry,
        programmed=nat.programmed,
        external_policy=nat.external_policy,
        endpoints=[f"{e.ip}:{e.port}" for e in nat.endpoints],
        local_endpoints=len(local),
        drop=nat.no_endpoints_action or None,
        health_check_node_port=nat.health_check_node_port or None,
        rules=list(nat.rules[:20]),
    )


def _no_local_endpoints(at: At, node: str, nat: NatView, all_ready: list[EndpointRef]) -> str:
    case, svc, entry = at.case, at.case.service, at.case.entry
    assert svc is not None and entry is not None
    where = ", ".join(sorted({e.node or "?" for e in all_ready})) or "no node"
    health = svc.health_check_node_port or nat.health_check_node_port or None
    dropped = (
        f"kube-proxy on {node} drops it (its drop rule for a service with no local endpoint)"
        if nat.no_endpoints_action == "DROP"
        else f"kube-proxy on {node} sends it nowhere"
    )
    checked = (
        f"a cloud load balancer health-checks port {health} and skips {node}, but a client aiming at {node} directly does not"
        if health
        else f"a client aiming at {node} directly is not redirected to a node that has one"
    )
    return (
        f"{svc.key} has externalTrafficPolicy: Local and {node} runs none of its {len(all_ready)} ready endpoints "
        f"(they run on {where}): traffic from outside the cluster to {_what(case, entry_address(case, node) or '?')} "
        f"arriving on {node} is not forwarded to another node, {dropped}; {checked}"
    )


def _node_reading(at: At, seen: Seen, node: str) -> Outcome:
    """What one receiving node's rules say about the entry."""
    case, svc, entry = at.case, at.case.service, at.case.entry
    address = entry_address(case, node)
    if svc is None or entry is None or address is None:
        return Outcome()
    what = _what(case, address)
    observed = seen[EntryNatAsk(node, entry.kind, address, entry.port, case.protocol)]
    if observed.value is None:
        return Outcome(unchecked=unchecked(observed, f"kube-proxy's rules for the {what}"))
    nat = observed.value
    name = f"ingress {node}: {entry.kind} dispatch"
    all_ready = routed_endpoints(case.endpoints)
    local = [e for e in all_ready if e.node == node]
    evidence = [_nat_evidence(node, nat, what, local)]
    probe: ProbeView | None = at.trail.probes.get(probe_label(case, node))
    # Whether the question aims at this node itself, not at an address routed to all of them.
    aimed = entry.kind == "nodeport" or node in entry.nodes
    # Only a probe to this node's own IP and NodePort tests its rules (one to an external or load
    # balancer IP is taken by the vantage node's own kube-proxy), and not when sent from the node itself
    # (local traffic there).
    reached = entry.kind == "nodeport" and probe is not None and probe.ok and not own_traffic(at, node)

    def warn(summary: str, code: C) -> Outcome:
        note = Finding(code, summary, node, Hop.DESTINATION_NODE if code != C.UNDETERMINED else Hop.SERVICE_NAT)
        return Outcome((result(LABEL, name, StepStatus.WARN, summary, evidence, node),), notes=(note,))

    def cause(code: C, hop: Hop, summary: str, **facts: str) -> Outcome:
        if reached:
            said = (
                f'the rules on {node} read as "{summary}", yet the probe to the {what} connected: they were not read as they are'
            )
            return warn(said, C.UNDETERMINED)
        found = Candidate(code, hop, summary, node, remediation(code, node=node, **facts), at.source.key)
        return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, node),), (found,))

    if nat.unreadable or nat.mode not in PROXY_MODES_READ:
        why = nat.unreadable or f"kube-proxy mode {nat.mode or 'none'}"
        return warn(f"service NAT on {node} is done by {why}; not inspected", C.UNDETERMINED)
    if not all_ready:
        return Outcome((result(LABEL, name, StepStatus.PASS, "no ready endpoints to dispatch to", evidence, node),))
    policy = nat.external_policy or svc.external_traffic_policy
    if not nat.programmed:
        summary = f"kube-proxy on {node} has not programmed the {what} of {svc.key}: traffic from outside arriving there is not translated"
        return cause(C.KUBE_PROXY_RULES_MISSING, Hop.SERVICE_NAT, summary)
    if policy == "Local" and not nat.endpoints:
        summary = _no_local_endpoints(at, node, nat, all_ready)
        if not aimed:
            # An address routed to the nodes: which of them it reaches is the router's (or the load
            # balancer's, by its health checks) choice, which the nodes do not show. Said, not the verdict.
            routed = (
                "its health check takes the node out of a load balancer"
                if entry.kind == "load-balancer"
                else (f"clients are dropped only if the network sends the address to {node}")
            )
            return warn(f"{summary} ({routed})", C.NODEPORT_NO_LOCAL_ENDPOINTS)
        health = svc.health_check_node_port or nat.health_check_node_port
        return cause(
            C.NODEPORT_NO_LOCAL_ENDPOINTS,
            Hop.DESTINATION_NODE,
            summary,
            namespace=svc.namespace,
            service=svc.name,
            **({"health_port": str(health)} if health else {}),
        )
    expected = {f"{e.ip}:{e.port}" for e in (local if policy == "Local" else all_ready)}
    programmed = {f"{e.ip}:{e.port}" for e in nat.endpoints}
    if programmed != expected:
        summary = (
            f"kube-proxy's rules for the {what} on {node} are stale: they send traffic from outside to "
            f"{', '.join(sorted(programmed)) or 'nothing'}; with externalTrafficPolicy {policy} the API's ready endpoints "
            f"for {node} are {', '.join(sorted(expected)) or 'none'}"
        )
        return cause(C.KUBE_PROXY_RULES_STALE, Hop.SERVICE_NAT, summary)
    summary = f"kube-proxy ({nat.mode}) on {node} sends the {what} to " + (
        f"its {len(expected)} local endpoint(s) (externalTrafficPolicy Local)"
        if policy == "Local"
        else f"the {len(expected)} ready endpoints"
    )
    return Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, node),))


def _conntrack_reading(at: At, seen: Seen, node: str) -> Outcome:
    """A conntrack entry on the receiving node that still steers the client's flow to a vanished endpoint."""
    case, src, entry, svc = at.case, at.source, at.case.entry, at.case.service
    address = entry_address(case, node)
    if entry is None or svc is None or address is None or not src.ip:
        return Outcome()
    observed = seen[ConntrackAsk(node, case.protocol, src.ip, address, entry.port)]
    if observed.value is None:
        return Outcome(unchecked=unchecked(observed, f"conntrack for the {_what(case, address)}"))
    current = {e.ip for e in case.endpoints} | {address, svc.cluster_ip}
    stale = [e for e in observed.value.entries if carries_traffic(e) and e.reply_src not in current]
    if not stale:
        return Outcome()
    e = stale[0]
    summary = (
        f"a conntrack entry on {node} still maps {e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}/{case.protocol} "
        f"to {e.reply_src}, which is no endpoint of {svc.key} any more ({e.timeout}s left)"
    )
    evidence = [ev("conntrack", f"{observed.value.total} entries for {src.ip} → {address}:{entry.port} on {node}", node)]
    found = Candidate(
        C.CONNTRACK_STALE_ENTRY,
        Hop.SERVICE_NAT,
        summary,
        node,
        remediation(C.CONNTRACK_STALE_ENTRY, node=node, protocol=case.protocol, vip=address, stale=e.reply_src),
        src.key,
    )
    return Outcome((result(LABEL, f"ingress {node}: conntrack", StepStatus.FAIL, summary, evidence, node),), (found,))


def _decide(at: At, seen: Seen) -> Outcome:
    if not applies(at):
        return Outcome()
    total = Outcome()
    for node in receiving_nodes(at.case):
        if at.case.source_kind == "node" and own_traffic(at, node):
            summary = f"{at.source.key} connects to its own node's NodePort: kube-proxy routes local traffic to every endpoint"
            total += Outcome((result(LABEL, f"ingress {node}: local traffic", StepStatus.SKIP, summary, (), node),))
            continue
        total += _node_reading(at, seen, node) + _conntrack_reading(at, seen, node)
    return total


def skipped(at: At, what: str) -> Outcome:
    """A pod-only step passed by for a source outside the cluster or on a node, said as a SKIP."""
    src = at.source
    summary = f"{src.key} is not a pod on the pod network: {what} does not apply"
    return Outcome((result(what, f"source {src.name}: {what}", StepStatus.SKIP, summary, (), src.node),))


STEP = Step("ingress", Hop.DESTINATION_NODE, frozenset({Need.ENTRY_NAT, Need.CONNTRACK}), _asks, _decide)
