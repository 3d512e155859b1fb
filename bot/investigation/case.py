"""From a resolved question to what the playbook and the history take: the `Case`, the workload
references, the choices for an ambiguous name and the verdict a resolution error ends with.

Pure functions over the cluster layer's data; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.cluster.errors import ResolutionError
from bot.cluster.models import EndpointInfo, PodInfo
from bot.cluster.resolve import Resolved
from bot.errors import BadInput
from bot.history.service import WorkloadRef
from bot.parse.models import Question, question_text
from bot.playbook.case import Case, EndpointRef, NodeRef, PodRef, ServiceRef
from bot.playbook.models import Hop, NameChoice, Verdict
from bot.policy import cluster_from_objects


def _pod_ref(pod: PodInfo) -> PodRef:
    return PodRef(
        namespace=pod.namespace,
        name=pod.name,
        ip=pod.ip,
        node=pod.node,
        phase=pod.phase,
        ready=pod.ready,
        reason=pod.reason or "",
        labels=dict(pod.labels),
        container_ports=tuple((p.name or "", p.port, p.protocol) for p in pod.container_ports),
        host_network=pod.host_network,
        uid=pod.uid,
    )


def _endpoint_port(endpoint: EndpointInfo, resolved: Resolved, pod: PodInfo | None) -> int | None:
    port = resolved.port
    number = endpoint.port_for(port.name, str(port.protocol))
    if number is not None:
        return number
    if isinstance(port.target_port, int):
        return port.target_port
    if isinstance(port.target_port, str) and pod is not None:
        named = pod.port_named(port.target_port, str(port.protocol))
        return named.port if named else None
    return None


def build_case(resolved: Resolved, agents_known: frozenset[str], dns_endpoints: tuple[EndpointRef, ...] = ()) -> Case:
    """The playbook's view of a resolved question."""
    protocol = str(resolved.port.protocol)
    pods_by_key = {p.key: p for p in resolved.target_pods}
    service = None
    endpoints: list[EndpointRef] = []
    dns_name = None
    port: int | None = None
    if resolved.target_kind == "service" and resolved.target_service is not None:
        svc = resolved.target_service
        port = resolved.port.service_port
        service = ServiceRef(
            namespace=svc.namespace,
            name=svc.name,
            cluster_ip=svc.cluster_ip or "",
            selector=dict(svc.selector) if svc.selector is not None else None,
            port=port or 0,
            target_port=resolved.port.target_port if resolved.port.target_port is not None else port or 0,
            port_name=resolved.port.name or "",
        )
        for e in resolved.endpoints:
            pod = pods_by_key.get(f"{e.pod_namespace}/{e.pod_name}") if e.pod_name else None
            number = _endpoint_port(e, resolved, pod)
            if number is None:
                continue
            endpoints.append(EndpointRef(e.ip, number, e.node, e.ready, _pod_ref(pod) if pod else None, e.serving, e.terminating))
        dns_name = f"{svc.name}.{svc.namespace}"
    elif resolved.target_kind == "pod" and resolved.target_pods:
        pod = resolved.target_pods[0]
        target = resolved.port.target_port
        named = pod.port_named(target, protocol) if isinstance(target, str) else None
        number = target if isinstance(target, int) else (named.port if named else None)
        port = number
        if pod.ip and number is not None:
            endpoints.append(EndpointRef(pod.ip, number, pod.node, pod.ready, _pod_ref(pod)))
    else:
        target = resolved.port.target_port
        port = target if isinstance(target, int) else None
    try:
        policy_cluster = cluster_from_objects(resolved.policy_objects)
    except BadInput:
        policy_cluster = None
    return Case(
        source_display=resolved.source,
        sources=tuple(_pod_ref(p) for p in resolved.source_pods),
        source_total=resolved.source_total,
        target_display=resolved.target,
        target_kind=resolved.target_kind,
        protocol=protocol,
        port=port,
        service=service,
        target_pods=tuple(_pod_ref(p) for p in resolved.target_pods),
        endpoints=tuple(endpoints),
        target_ip=resolved.target_address,
        dns_name=dns_name,
        dns_fqdn=f"{dns_name}.svc.cluster.local." if dns_name else None,
        dns_endpoints=dns_endpoints,
        nodes={n.name: NodeRef(n.name, n.internal_ip or "", n.pod_cidr or "") for n in resolved.nodes.values()},
        policy_cluster=policy_cluster,
        agents_known=agents_known,
        notes=resolved.notes,
    )


def workload_refs(resolved: Resolved) -> tuple[WorkloadRef, WorkloadRef]:
    """The source and target as the history stores them."""
    q = resolved.question
    src_ns = resolved.source_pods[0].namespace if resolved.source_pods else q.source.namespace
    source = WorkloadRef(q.source.kind.value, src_ns, q.source.name, resolved.source)
    if resolved.target_service is not None:
        svc = resolved.target_service
        target = WorkloadRef("service", svc.namespace, svc.name, resolved.target)
    elif resolved.target_pods:
        pod = resolved.target_pods[0]
        target = WorkloadRef(resolved.target_kind, pod.namespace, pod.name, resolved.target)
    else:
        target = WorkloadRef(resolved.target_kind, None, resolved.target_address, resolved.target)
    return source, target


def name_choices(question: Question, error: ResolutionError) -> tuple[NameChoice, ...]:
    """For an ambiguous name: each candidate with the question asked again naming it precisely."""
    if error.role is None:
        return ()
    choices = []
    for ref, label in zip(error.candidate_refs, error.candidates, strict=True):
        source, target = (ref, question.target) if error.role == "source" else (question.source, ref)
        text = question_text(
            source,
            target,
            port=question.port,
            port_name=question.port_name,
            protocol=question.protocol,
            namespace=question.namespace,
        )
        choices.append(NameChoice(label, text))
    return tuple(choices)


def resolution_verdict(error: ResolutionError, choices: tuple[NameChoice, ...]) -> Verdict:
    """The verdict a question ends with when a name in it resolves to nothing or to several things.

    Built from the error's fields (its code, message and hint), at the API hop; the choices' questions
    are the remediation.
    """
    summary = f"{error.message} — {error.hint}" if error.hint else error.message
    return Verdict(error.code, summary, None, Hop.API, tuple(c.question for c in choices))


def dns_endpoint_refs(endpoints: Iterable[EndpointInfo]) -> tuple[EndpointRef, ...]:
    """The cluster DNS service's endpoints as the playbook takes them (those serving on a UDP port)."""
    out = []
    for e in endpoints:
        port = next((p.port for p in e.ports if p.protocol == "UDP" and p.port), None)
        if port is None:
            continue
        pod = PodRef(e.pod_namespace or "kube-system", e.pod_name or e.ip, e.ip, e.node) if e.pod_name else None
        out.append(EndpointRef(e.ip, port, e.node, e.ready, pod, e.serving, e.terminating))
    return tuple(out)
