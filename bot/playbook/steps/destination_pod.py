"""The destination pod hop: is the endpoint's pod there, its interfaces up, and does something listen."""

from __future__ import annotations

from bot.playbook.case import EndpointRef, PodRef
from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NodeFacts
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import At, Candidate, Seen, Unchecked, unchecked
from bot.playbook.steps.evidence import ev, socket_data
from bot.playbook.steps.observe import LocatePodAsk, SocketsAsk
from bot.playbook.steps.pod_network import net_evidence, overlay_mtu, pod_interface_checks


def pod_asks(e: EndpointRef, protocol: str) -> tuple[LocatePodAsk, SocketsAsk]:
    """The endpoint's pod as its node sees it, and what listens on the endpoint's port inside it."""
    return LocatePodAsk(e.node or "", e.ip), SocketsAsk(e.node or "", e.ip, e.port, protocol)


def destination_pod(
    at: At, seen: Seen, e: EndpointRef, facts: NodeFacts | None, evidence: list[Evidence], missed: list[Unchecked], protocol: str
) -> list[Candidate]:
    src = at.source
    node = e.node or "NODE"
    found: list[Candidate] = []
    pod = e.pod or PodRef(namespace="", name=e.ip, ip=e.ip, node=e.node)
    located_ask, sockets_ask = pod_asks(e, protocol)
    located, sockets = seen[located_ask], seen[sockets_ask]
    if located.value is not None:
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
    elif located.unreachable:
        missed += unchecked(located, f"the destination pod {pod.key}")
    elif located.error_kind == "not_found":
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
                f"{pod.key}: "
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
                    f"nothing listens on {e.port}/{protocol} inside {pod.key}",
                    e.node,
                    remediation(C.DESTINATION_NOT_LISTENING, namespace=pod.namespace, pod=pod.name, port=str(e.port)),
                )
            )
    elif sockets.unreachable:
        missed += unchecked(sockets, "the listening sockets")
    return found
