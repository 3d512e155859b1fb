"""Host-network pods' ports: is the socket on the pod's port the pod's own?

A host-network pod shares its node's network namespace, so its port is a port of the node: a daemon
started on the node outside Kubernetes, or another host-network pod, may already hold it. Connections
to the node's IP and that port then reach the other process (the probes may well connect), or the pod
cannot bind and never listens. Whose a socket is cannot be read from the network namespace; it is read
from the owning process's cgroup (the agent reports it from /proc): kubelet puts every process of a
pod under a cgroup that names the pod's UID (`kubepods/besteffort/pod<uid>/…` with the cgroupfs
driver, `kubepods-besteffort-pod<uid_with_underscores>.slice` with systemd's). A socket on the port
whose owner's cgroup names another UID, or none, while no socket there is the pod's → HOST_PORT_CONFLICT
on the pod's node. This runs on the target's walk, before any probe, because the probes cannot tell.
"""

from __future__ import annotations

import ipaddress
import re

from bot.playbook.case import EndpointRef, PodRef, routed_endpoints
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ListeningSocket
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.evidence import ev, socket_data
from bot.playbook.steps.observe import SocketsAsk

LABEL = "destination: host port"

_POD_UID = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")


def pod_uid_of(cgroup: str) -> str | None:
    """The pod UID a cgroup path names (kubelet's cgroupfs or systemd layout), or None."""
    found = _POD_UID.search(cgroup.lower())
    return found.group(1).replace("_", "-") if found else None


def host_network_endpoints(at: At) -> tuple[EndpointRef, ...]:
    """The target's endpoints that are host-network pods on a known node."""
    case = at.case
    endpoints = routed_endpoints(case.endpoints) if case.target_kind == "service" else list(case.endpoints)
    return tuple(e for e in endpoints if e.pod is not None and e.pod.host_network and e.node)


def node_sockets_ask(e: EndpointRef, protocol: str) -> SocketsAsk:
    """What listens on the endpoint's port in its node's own namespace (where a host-network pod listens)."""
    return SocketsAsk(e.node or "", "", e.port, protocol)


def _covers(sock: ListeningSocket, ip: str) -> bool:
    """The socket receives connections to `ip` (bound to it, or to the wildcard of its family)."""
    try:
        bound = ipaddress.ip_address(sock.address)
        return bound.is_unspecified or bound == ipaddress.ip_address(ip)
    except ValueError:
        return False


def _owner(sock: ListeningSocket) -> str:
    if not sock.pid:
        return "an owner the agent could not see"
    uid = pod_uid_of(sock.cgroup)
    whose = f"the pod with UID {uid}" if uid else "no pod (its cgroup names none)"
    return f"pid {sock.pid} ({sock.process or '?'}, cgroup {sock.cgroup or '?'}; {whose})"


def _asks(at: At) -> tuple[Ask[object], ...]:
    return tuple(dict.fromkeys(node_sockets_ask(e, at.case.protocol) for e in host_network_endpoints(at)))


def _decide(at: At, seen: Seen) -> Outcome:
    outcome = Outcome()
    for e in host_network_endpoints(at):
        outcome += _endpoint(at, seen, e)
    return outcome


def _endpoint(at: At, seen: Seen, e: EndpointRef) -> Outcome:
    pod, protocol, node = e.pod or PodRef("", e.ip, e.ip, e.node), at.case.protocol, e.node or "NODE"
    observed = seen[node_sockets_ask(e, protocol)]
    name = f"{pod.name}: port {e.port}/{protocol} on {node}"
    if observed.value is None:
        return Outcome(unchecked=unchecked(observed, f"the sockets on port {e.port} of {node}"))
    listening = [s for s in observed.value if _covers(s, e.ip)]
    evidence = [
        ev(
            "sockets",
            f"{node} (node namespace), {e.ip}:{e.port}/{protocol}: "
            + ("; ".join(f"{s.address}:{s.port} held by {_owner(s)}" for s in listening) or "nothing listens"),
            e.node,
            sockets=[socket_data(s) for s in listening],
            pod_uid=pod.uid or None,
        )
    ]
    if not listening:
        # Nothing to tell apart; a probe that fails walks the path and says DESTINATION_NOT_LISTENING.
        said = f"nothing listens on {e.ip}:{e.port}/{protocol} in {node}'s namespace"
        return Outcome((result(LABEL, name, StepStatus.WARN, said, evidence, e.node),))
    if not pod.uid:
        said = f"the API gave no UID for {pod.key}: whose the socket on {e.port} is was not compared"
        return Outcome((result(LABEL, name, StepStatus.WARN, said, evidence, e.node),))
    mine = [s for s in listening if pod_uid_of(s.cgroup) == pod.uid]
    others = [s for s in listening if s.pid and pod_uid_of(s.cgroup) != pod.uid]
    if not others:
        said = (
            f"{pod.key} holds {e.ip}:{e.port}/{protocol} on {node} itself"
            if mine
            else (f"the owner of {e.ip}:{e.port}/{protocol} on {node} could not be seen: not compared")
        )
        return Outcome((result(LABEL, name, StepStatus.PASS if mine else StepStatus.WARN, said, evidence, e.node),))
    holder = others[0]
    how = (
        f"{pod.key} listens there too, so connections are shared with it or taken by the more specific bind"
        if mine
        else f"{pod.key} does not hold it (it could not bind)"
    )
    summary = (
        f"port {e.port}/{protocol} of host-network pod {pod.key} is held on {node} by {_owner(holder)}, "
        f"not by a process of the pod (UID {pod.uid}): connections to {e.ip}:{e.port} reach that process; {how}"
    )
    fix = remediation(C.HOST_PORT_CONFLICT, node=node, port=str(e.port), namespace=pod.namespace, pod=pod.name)
    found = Candidate(C.HOST_PORT_CONFLICT, Hop.DESTINATION_NODE, summary, e.node, fix)
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, e.node),), (found,))


STEP = Step("host_port", Hop.DESTINATION_NODE, frozenset({Need.SOCKETS}), _asks, _decide)
