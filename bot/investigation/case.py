"""From a resolved question to what the playbook and the history take: the `Case`, the workload
references, the choices for an ambiguous name and the verdict a resolution error ends with.

Pure functions over the cluster layer's data; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.cluster.entries import EntryInfo
from bot.cluster.errors import ResolutionError
from bot.cluster.models import EndpointInfo, NodeInfo, PodInfo, ServiceInfo
from bot.cluster.resolve import Resolved, TargetPort
from bot.errors import BadInput
from bot.history.views import WorkloadRef
from bot.parse.models import OUTSIDE_NAME, Question, question_text
from bot.playbook.case import Case, EndpointRef, Entry, NodeRef, PodRef, ServiceRef
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
        dns_policy=pod.dns_policy,
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


def service_ref(svc: ServiceInfo, port: TargetPort) -> ServiceRef:
    """The playbook's view of the target service and the port asked about: every field the outside
    paths read (type, the NodePort of that port, traffic policies, external and load balancer IPs)."""
    number = port.service_port
    asked = next((p for p in svc.ports if p.port == number and p.protocol == str(port.protocol)), None)
    # An ExternalName has no cluster IP at all; a headless service's is "None", as the API writes it.
    cluster_ip = "" if svc.type == "ExternalName" else svc.cluster_ip or "None"
    return ServiceRef(
        namespace=svc.namespace,
        name=svc.name,
        cluster_ip=cluster_ip,
        selector=dict(svc.selector) if svc.selector is not None else None,
        port=number or 0,
        target_port=port.target_port if port.target_port is not None else number or 0,
        port_name=port.name or "",
        type=svc.type,
        node_port=asked.node_port if asked is not None else None,
        external_traffic_policy=svc.external_traffic_policy,
        internal_traffic_policy=svc.internal_traffic_policy,
        health_check_node_port=svc.health_check_node_port,
        external_ips=svc.external_ips,
        load_balancer_ips=svc.load_balancer_ips,
        session_affinity=svc.session_affinity,
        external_name=svc.external_name,
    )


def node_source(node: NodeInfo, name: str | None = None) -> PodRef:
    """A node (or a client outside standing in the node's own namespace) as a source: one host-network
    pod with the node's IP, so that the steps probe from the node's network namespace."""
    return PodRef(namespace="", name=name or node.name, ip=node.internal_ip, node=node.name, host_network=True, dns_policy="")


def vantage_node(nodes: Iterable[NodeInfo], agents_known: frozenset[str], receiving: tuple[str, ...]) -> NodeInfo | None:
    """Where a client outside the cluster is played from: a node with an agent (its namespace stands in
    for the client) that is not a receiving node when another node has an agent, so that a NodePort or
    external IP is reached over the network as a client would; first by name for a stable choice."""
    listed = sorted((n for n in nodes if n.internal_ip), key=lambda n: n.name)
    with_agent = [n for n in listed if n.name in agents_known] or listed
    elsewhere = [n for n in with_agent if n.name not in receiving]
    chosen = elsewhere or with_agent
    return chosen[0] if chosen else None


def _sources(resolved: Resolved, agents_known: frozenset[str]) -> tuple[PodRef, ...]:
    if resolved.source_kind == "node" and resolved.source_node is not None:
        return (node_source(resolved.source_node),)
    if resolved.source_kind == "external":
        receiving = resolved.entry.nodes if resolved.entry is not None else ()
        if resolved.target_node is not None:
            receiving = (*receiving, resolved.target_node.name)
        node = vantage_node(resolved.nodes.values(), agents_known, receiving)
        return (node_source(node, OUTSIDE_NAME),) if node is not None else ()
    return tuple(_pod_ref(p) for p in resolved.source_pods)


def _entry(entry: EntryInfo | None) -> Entry | None:
    if entry is None:
        return None
    return Entry(kind=entry.kind.value, port=entry.port, address=entry.address, nodes=entry.nodes)


def build_case(resolved: Resolved, agents_known: frozenset[str], dns_endpoints: tuple[EndpointRef, ...] = ()) -> Case:
    """The playbook's view of a resolved question.

    A node source is one host-network PodRef named after the node; a client outside the cluster is
    one host-network PodRef named "outside" on a vantage node (`vantage_node`). A name outside the
    cluster (the target's, or an ExternalName's CNAME) is `Case.external_name`, and `target_ip` stays
    unset for it: the DNS step resolves it from the source.
    """
    protocol = str(resolved.port.protocol)
    pods_by_key = {p.key: p for p in resolved.target_pods}
    service = None
    endpoints: list[EndpointRef] = []
    dns_name = None
    dns_fqdn = None
    port: int | None = None
    target_ip = resolved.target_address
    notes = resolved.notes
    if resolved.target_service is not None:
        svc = resolved.target_service
        service = service_ref(svc, resolved.port)
        port = resolved.port.service_port
        if port is None and isinstance(resolved.port.target_port, int):
            port = resolved.port.target_port
        for e in resolved.endpoints:
            pod = pods_by_key.get(f"{e.pod_namespace}/{e.pod_name}") if e.pod_name else None
            number = _endpoint_port(e, resolved, pod)
            if number is None:
                continue
            endpoints.append(EndpointRef(e.ip, number, e.node, e.ready, _pod_ref(pod) if pod else None, e.serving, e.terminating))
        dns_name = f"{svc.name}.{svc.namespace}"
        dns_fqdn = f"{dns_name}.svc.cluster.local."
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
    if resolved.external_name is not None:
        if service is None:
            dns_name, dns_fqdn = resolved.external_name, f"{resolved.external_name.rstrip('.')}."
        target_ip = None  # what the name resolves to is the DNS step's to find, from the source
    if resolved.source_kind == "external" and resolved.source_address is not None:
        notes = (*notes, f"{resolved.source_address} is outside the cluster: a node's own namespace stands in for it")
    try:
        policy_cluster = cluster_from_objects(resolved.policy_objects)
    except BadInput:
        policy_cluster = None
    sources = _sources(resolved, agents_known)
    return Case(
        source_display=resolved.source,
        sources=sources,
        source_total=resolved.source_total if resolved.source_kind == "pod" else len(sources),
        target_display=resolved.target,
        target_kind=resolved.target_kind,
        protocol=protocol,
        port=port,
        service=service,
        target_pods=tuple(_pod_ref(p) for p in resolved.target_pods),
        endpoints=tuple(endpoints),
        target_ip=target_ip,
        dns_name=dns_name,
        dns_fqdn=dns_fqdn,
        dns_endpoints=dns_endpoints,
        nodes={n.name: NodeRef(n.name, n.internal_ip or "", n.pod_cidr or "") for n in resolved.nodes.values()},
        policy_cluster=policy_cluster,
        agents_known=agents_known,
        notes=notes,
        source_kind=resolved.source_kind,
        entry=_entry(resolved.entry),
        external_name=resolved.external_name,
    )


def workload_refs(resolved: Resolved) -> tuple[WorkloadRef, WorkloadRef]:
    """The source and target as the history stores them: a node as kind "node" with its name, a client
    outside as kind "outside" (named by its address when one was given), a name outside the cluster
    as kind "external" with the name."""
    q = resolved.question
    if resolved.source_kind == "node" and resolved.source_node is not None:
        source = WorkloadRef("node", None, resolved.source_node.name, resolved.source)
    elif resolved.source_kind == "external":
        source = WorkloadRef("outside", None, resolved.source_address or OUTSIDE_NAME, resolved.source)
    else:
        src_ns = resolved.source_pods[0].namespace if resolved.source_pods else q.source.namespace
        source = WorkloadRef(q.source.kind.value, src_ns, q.source.name, resolved.source)
    if resolved.target_service is not None:
        svc = resolved.target_service
        target = WorkloadRef("service", svc.namespace, svc.name, resolved.target)
    elif resolved.target_pods:
        pod = resolved.target_pods[0]
        target = WorkloadRef(resolved.target_kind, pod.namespace, pod.name, resolved.target)
    elif resolved.target_node is not None:
        target = WorkloadRef("node", None, resolved.target_node.name, resolved.target)
    else:
        name = resolved.external_name or resolved.target_address
        target = WorkloadRef(resolved.target_kind, None, name, resolved.target)
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
