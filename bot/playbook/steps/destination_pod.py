"""The destination pod hop: is the endpoint's pod there, its interfaces up, and does something listen.

A host-network pod has no namespace, veth or bridge port of its own: its IP is its node's, and it
listens in the node's namespace. For it only the sockets are read, there (whose they are is the
host-port step's question, `bot.playbook.steps.hostport`).
"""

from __future__ import annotations

from bot.playbook.case import EndpointRef, PodRef
from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NodeFacts
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Seen, Unchecked, unchecked
from bot.playbook.steps.evidence import ev, socket_data
from bot.playbook.steps.observe import LocatePodAsk, SocketsAsk
from bot.playbook.steps.pod_network import net_evidence, overlay_mtu, pod_interface_checks


def _host_network(e: EndpointRef) -> bool:
    return e.pod is not None and e.pod.host_network


def _sockets_ask(e: EndpointRef, protocol: str) -> SocketsAsk:
    # A host-network pod listens in its node's namespace (pod_ip "" asks there).
    return SocketsAsk(e.node or "", "" if _host_network(e) else e.ip, e.port, protocol)


def pod_asks(e: EndpointRef, protocol: str) -> tuple[Ask[object], ...]:
    """The endpoint's pod as its node sees it (not for a host-network pod: it has no namespace of its
    own), and what listens on the endpoint's port inside it."""
    if _host_network(e):
        return (_sockets_ask(e, protocol),)
    return LocatePodAsk(e.node or "", e.ip), _sockets_ask(e, protocol)


def destination_pod(
    at: At, seen: Seen, e: EndpointRef, facts: NodeFacts | None, evidence: list[Evidence], missed: list[Unchecked], protocol: str
) -> list[Candidate]:
    src = at.source
    node = e.node or "NODE"
    found: list[Candidate] = []
    pod = e.pod or PodRef(namespace="", name=e.ip, ip=e.ip, node=e.node)
    sockets = seen[_sockets_ask(e, protocol)]
    located = None if _host_network(e) else seen[LocatePodAsk(e.node or "", e.ip)]
    where = f"{e.node} (node namespace, host-network pod {pod.key})" if located is None else pod.key
    if located is not None and located.value is not None:
        net = located.value
        evidence.append(net_evidence(pod, net))
        found += pod_interface_checks(
            pod, net, facts, Hop.DESTINATION_POD, overlay_mtu(facts) if e.node != src.node else None, [src.ip or ""]
        )
        if net.route_to_pod is not None and not net.route_to_pod.usable:
            found.append(
                Candidate(
                    C.NODE_ROUTE_MISSING,
                    Hop.DESTINATION_NODE,
                    f"{e.node} has no usable route to its own pod {e.ip}",
                    e.node,
                    remediation(
                        C.NODE_ROUTE_MISSING,
                        node=node,
                        cidr=f"{e.ip}/32",
                        via="",
                        device=net.host_peer.name if net.host_peer else "VETH",
                    ),
                )
            )
    elif located is not None and located.unreachable:
        missed += unchecked(located, f"the destination pod {pod.key}")
    elif located is not None and located.error_kind == "not_found":
        found.append(
            Candidate(
                C.POD_HAS_NO_IP,
                Hop.DESTINATION_POD,
                f"no pod on {e.node} holds {e.ip} any more, though the API lists it for {pod.key}",
                e.node,
                remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=node),
            )
        )
    if sockets.value is not None:
        evidence.append(
            ev(
                "sockets",
                f"{where}: "
                + (
                    ", ".join(f"{s.protocol} {s.address}:{s.port} ({s.process})" for s in sockets.value)
                    or f"nothing listens on {e.port}/{protocol}"
                ),
                e.node,
                sockets=[socket_data(s) for s in sockets.value],
            )
        )
        if not sockets.value and not found:
            found.append(
                Candidate(
                    C.DESTINATION_NOT_LISTENING,
                    Hop.DESTINATION_POD,
                    f"nothing listens on {e.port}/{protocol} inside {pod.key}"
                    + (f" (host network: {e.node}'s namespace)" if located is None else ""),
                    e.node,
                    remediation(C.DESTINATION_NOT_LISTENING, namespace=pod.namespace, pod=pod.name, port=str(e.port)),
                )
            )
    elif sockets.unreachable:
        missed += unchecked(sockets, "the listening sockets")
    return found
