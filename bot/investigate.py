"""One investigation, end to end: parse → resolve → fan out to agents → playbook → result.

This is the use case behind `kubereach ask`, the Slack app and re-runs. Side effects stay at the
edges it calls (the cluster client, the fleet); the result is plain frozen data that the renderers
and the history take as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.cluster import ClusterClient
from bot.cluster.errors import ClusterUnavailable, ResolutionError
from bot.cluster.models import EndpointInfo, PodInfo
from bot.cluster.resolve import Resolved
from bot.errors import BadInput
from bot.fleet.client import Fleet
from bot.fleet.observer import FleetObserver
from bot.history.db import HostCheck
from bot.history.enums import Origin
from bot.history.ids import new_investigation_id
from bot.history.recorder import Asker, HistoryRecorder
from bot.history.service import Person, SeenBefore, WorkloadRef
from bot.logs import INVESTIGATION_ID
from bot.metrics import BotMetrics
from bot.parse import parse_question
from bot.parse.models import Question, question_text
from bot.playbook.case import Case, EndpointRef, NodeRef, PodRef, ServiceRef
from bot.playbook.engine import Diagnosis, run_playbook
from bot.playbook.models import Hop, InvestigationResult, NameChoice, StepResult, Verdict, VerdictCode
from bot.settings import BotSettings

log = logging.getLogger("kubereach.investigate")
StepCallback = Callable[[StepResult], None]
CLI_ASKER = Asker(Person("cli", os.environ.get("USER", "cli")), Origin.CLI)


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
    from bot.policy import cluster_from_objects

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


def seen_before_line(seen: SeenBefore | None) -> str | None:
    """ "seen 3 times in 30 days, last on 2026-11-02 by @ana, resolved: …" or None."""
    if seen is None or seen.count == 0:
        return None
    line = f"seen {seen.count} time{'s' if seen.count != 1 else ''} in {seen.within.days} days"
    if seen.last_at is not None:
        line += f", last on {seen.last_at.date().isoformat()}"
    if seen.last_asked_by is not None:
        line += f" by @{seen.last_asked_by.name}"
    if seen.last_resolution is not None:
        line += f", resolved: {seen.last_resolution.note or 'no note'} (@{seen.last_resolution.by.name})"
    return line


class Investigator:
    """Holds the cluster client and the fleet for a process; runs investigations."""

    def __init__(self, settings: BotSettings, history: HistoryRecorder | None = None, metrics: BotMetrics | None = None) -> None:
        self.settings = settings
        self.history = history
        self.metrics = metrics
        self._cluster: ClusterClient | None = None
        self._fleet: Fleet | None = None
        self._fleet_loop: asyncio.AbstractEventLoop | None = None

    @property
    def cluster(self) -> ClusterClient:
        """The Kubernetes client (built on first use)."""
        if self._cluster is None:
            kubeconfig = self.settings.kubeconfig
            self._cluster = ClusterClient.from_kubeconfig(kubeconfig) if kubeconfig else ClusterClient.in_cluster()
        return self._cluster

    def agent_addresses(self) -> dict[str, str]:
        """node → address of its agent."""
        agents = self.settings.agents
        if agents.discovery == "static":
            return dict(agents.nodes)
        return self.cluster.agent_addresses(agents.namespace, agents.label_selector, agents.port)

    def dns_endpoints(self) -> tuple[EndpointRef, ...]:
        """The cluster DNS service's endpoints (kube-system/kube-dns, UDP 53)."""
        from bot.cluster.client import ENDPOINT_SLICES
        from bot.cluster.models import endpoints_of_slice

        selector = "kubernetes.io/service-name=kube-dns"
        slices = self.cluster.list_objects(ENDPOINT_SLICES, "kube-system", label_selector=selector)
        out = []
        for obj in slices:
            for e in endpoints_of_slice(obj):
                port = next((p.port for p in e.ports if p.protocol == "UDP" and p.port), None)
                if port is None:
                    continue
                pod = PodRef(e.pod_namespace or "kube-system", e.pod_name or e.ip, e.ip, e.node) if e.pod_name else None
                out.append(EndpointRef(e.ip, port, e.node, e.ready, pod, e.serving, e.terminating))
        return tuple(out)

    async def investigate(
        self,
        text: str,
        *,
        on_step: StepCallback | None = None,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
        investigation_id: str | None = None,
        asker: Asker | None = None,
    ) -> InvestigationResult:
        """Run one investigation. Bad questions raise BadInput; unresolvable names end with a verdict."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        inv_id = investigation_id or new_investigation_id(started_at)
        INVESTIGATION_ID.set(inv_id)
        question = parse_question(text)
        try:
            resolved = await asyncio.to_thread(
                self.cluster.resolve,
                question,
                default_namespace=default_namespace or self.settings.default_namespace,
                allowed_namespaces=allowed_namespaces,
            )
        except ResolutionError as exc:
            choices = name_choices(question, exc)
            verdict = Verdict(
                VerdictCode(exc.code), str(exc).replace("\n  hint: ", " — "), None, Hop.API, tuple(c.question for c in choices)
            )
            if self.history is not None:
                recorded = self.history.start(text, asker or CLI_ASKER, None, None, (), inv_id)
                early = InvestigationResult(
                    recorded or inv_id, text, question.source.display(), "", verdict, (), (), _ms(t0), started_at
                )
                self.history.finish(recorded, early)
                inv_id = recorded or inv_id
            return InvestigationResult(
                inv_id,
                text,
                question.source.display(),
                question.target.display(str(question.port) if question.port else question.port_name),
                verdict,
                (),
                (),
                _ms(t0),
                started_at,
                parsed=question,
                choices=choices,
            )
        except ClusterUnavailable as exc:
            self._record_failure(text, asker, f"the Kubernetes API could not be asked: {exc.message}")
            raise
        try:
            addresses, dns_endpoints = await asyncio.gather(
                asyncio.to_thread(self.agent_addresses), asyncio.to_thread(self.dns_endpoints)
            )
        except ClusterUnavailable as exc:
            self._record_failure(text, asker, f"the Kubernetes API could not be asked: {exc.message}")
            raise
        case = build_case(resolved, frozenset(addresses), dns_endpoints)
        source_ref, target_ref = workload_refs(resolved)
        namespaces = tuple(
            sorted(
                {p.namespace for p in case.sources}
                | {p.namespace for p in case.target_pods}
                | ({case.service.namespace} if case.service else set())
            )
        )
        recorded = None
        if self.history is not None:
            recorded = await asyncio.to_thread(
                self.history.start, text, asker or CLI_ASKER, source_ref, target_ref, namespaces, inv_id
            )
            inv_id = recorded or inv_id
            INVESTIGATION_ID.set(inv_id)
        log.info("investigating %r: %s → %s", text, resolved.source, resolved.target)
        order = 0

        def step_done(step: StepResult) -> None:
            nonlocal order
            order += 1
            if self.history is not None:
                self.history.step(recorded, step, order)
            if self.metrics is not None:
                self.metrics.step_finished(step)
            if on_step is not None:
                on_step(step)

        fleet = self._fleet_for(addresses)
        try:
            diagnosis: Diagnosis = await run_playbook(case, FleetObserver(fleet), step_done)
        except BaseException as exc:
            if self.history is not None:
                self.history.fail(recorded, f"{type(exc).__name__}: {exc}")
            raise
        result = InvestigationResult(
            id=inv_id,
            question=text,
            source=resolved.source,
            target=resolved.target,
            verdict=diagnosis.verdict,
            steps=diagnosis.steps,
            findings=diagnosis.findings,
            duration_ms=_ms(t0),
            started_at=started_at,
            namespaces=namespaces,
            notes=resolved.notes,
            per_source=dict(diagnosis.per_source),
            parsed=question,
        )
        log.info(
            "verdict %s (node %s, hop %s) in %.0f ms",
            result.verdict.code.value,
            result.verdict.node,
            result.verdict.hop,
            result.duration_ms,
        )
        if self.metrics is not None:
            self.metrics.investigation_finished(result.verdict.code, result.duration_ms / 1000)
        if self.history is not None:
            self.history.finish(recorded, result)
            seen = self.history.seen_before(recorded, source_ref, target_ref, result.verdict)
            result = dataclasses.replace(result, seen_before=seen_before_line(seen))
        return result

    def _record_failure(self, text: str, asker: Asker | None, error: str) -> None:
        """An investigation that could not run (the API did not answer) is recorded as failed, not lost."""
        if self.history is not None:
            self.history.fail(self.history.start(text, asker or CLI_ASKER, None, None, ()), error)

    def _fleet_for(self, addresses: dict[str, str]) -> Fleet:
        """The fleet of this event loop, kept open across investigations (channels are per loop)."""
        loop = asyncio.get_running_loop()
        if self._fleet is None or self._fleet_loop is not loop:
            self._fleet = Fleet(addresses, self.settings.agents, self.metrics)
            self._fleet_loop = loop
        elif self._fleet.addresses != addresses:
            self._fleet.retarget(addresses)
        return self._fleet

    async def aclose(self) -> None:
        """Close the agent channels (on the loop that opened them) and the cluster client."""
        if self._fleet is not None and self._fleet_loop is asyncio.get_running_loop():
            await self._fleet.close()
        self._fleet = None
        self.close()

    def close(self) -> None:
        """Release the cluster client, and the agent channels when their loop runs in another thread."""
        fleet, loop = self._fleet, self._fleet_loop
        self._fleet = self._fleet_loop = None
        if fleet is not None and loop is not None and loop.is_running() and not loop.is_closed():
            running = None
            with contextlib.suppress(RuntimeError):  # no loop runs in this thread
                running = asyncio.get_running_loop()
            if running is not loop:
                asyncio.run_coroutine_threadsafe(fleet.close(), loop).result(timeout=10)
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def bot_pod_check(settings: BotSettings) -> HostCheck | None:
    """In a cluster (in-cluster configuration), a check whether a bot pod of a given name still exists
    in this bot's namespace — how investigations of a replica that is gone are found. None elsewhere."""
    if settings.kubeconfig is not None:
        return None
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return None
    if not namespace:
        return None

    def exists(pod_name: str) -> bool | None:
        from bot.cluster.client import PODS
        from bot.cluster.errors import ClusterUnavailable

        try:
            with ClusterClient.in_cluster() as client:
                return client.get_object(PODS, pod_name, namespace) is not None
        except ClusterUnavailable:
            return None

    return exists


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)
