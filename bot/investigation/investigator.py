"""One investigation, end to end: parse → resolve → fan out to agents → playbook → recorded result.

This is the use case behind `kubereach ask`, the Slack app, re-runs and the digest's sweep. Side
effects stay with the collaborators it is given (the cluster client, the fleet, the history recorder,
the metrics); errors arrive already mapped by the layer they come from (`ClusterUnavailable`,
`ResolutionError`, `CallFailure`, `HistoryError`). The result is plain frozen data; its one line of
text, "seen before", is rendered by `bot.render.seen`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.cluster.client import ClusterClient
from bot.cluster.errors import ClusterUnavailable, ResolutionError
from bot.cluster.lookups import dns_endpoints, dns_upstreams
from bot.cluster.watchcache import CachedCluster
from bot.fleet.loop import LoopFleet
from bot.fleet.observer import FleetObserver
from bot.history.enums import Origin
from bot.history.ids import new_investigation_id
from bot.history.views import Asker, Person
from bot.investigation.case import build_case, dns_endpoint_refs, name_choices, resolution_verdict, workload_refs
from bot.logs import INVESTIGATION_ID
from bot.parse import parse_question
from bot.playbook.case import EndpointRef
from bot.playbook.engine import Diagnosis, run_playbook
from bot.playbook.models import InvestigationResult, StepResult
from bot.settings import BotSettings, local_user

if TYPE_CHECKING:
    # Types only: `ask --no-history` runs without the database layer (SQLAlchemy, Alembic) and the
    # Prometheus client, which a process per question would otherwise import for nothing.
    from bot.digest.models import Sweep
    from bot.history.recorder import HistoryRecorder
    from bot.metrics import BotMetrics

log = logging.getLogger("kubereach.investigate")
StepCallback = Callable[[StepResult], None]


def cli_asker() -> Asker:
    """The asker of a command-line investigation: the local user."""
    return Asker(Person("cli", local_user()), Origin.CLI)


class Investigator:
    """Holds the cluster client and the fleet for a process; runs investigations.

    Its collaborators are passed in: the settings, the history recorder and the metrics (each may be
    None), and the cluster client (built from the settings on first use when not given). The agent
    channels are kept per event loop across investigations (`bot.fleet.loop.LoopFleet`).
    """

    def __init__(
        self,
        settings: BotSettings,
        history: HistoryRecorder | None = None,
        metrics: BotMetrics | None = None,
        *,
        cluster: ClusterClient | None = None,
        watch_cluster: bool = False,
    ) -> None:
        """`watch_cluster`: read the cluster through watch caches shared by this process's
        investigations (`bot.cluster.watchcache`; for `serve`), unless the settings turn them off."""
        self.settings = settings
        self.history = history
        self.metrics = metrics
        self._cluster: ClusterClient | None = cluster
        self._watch_cluster = watch_cluster and settings.cluster_cache_max_staleness_s > 0
        self._cached: CachedCluster | None = None
        self._fleets = LoopFleet(settings.agents, metrics)

    @property
    def cluster(self) -> ClusterClient:
        """The Kubernetes client (built on first use)."""
        if self._cluster is None:
            kubeconfig = self.settings.kubeconfig
            self._cluster = ClusterClient.from_kubeconfig(kubeconfig) if kubeconfig else ClusterClient.in_cluster()
        return self._cluster

    @property
    def reader(self) -> ClusterClient | CachedCluster:
        """What questions read the cluster through: the watch caches (serve), else the client."""
        if not self._watch_cluster:
            return self.cluster
        if self._cached is None:
            self._cached = CachedCluster(
                self.cluster,
                max_staleness_s=self.settings.cluster_cache_max_staleness_s,
                max_objects=self.settings.cluster_cache_max_objects,
            )
        return self._cached

    def agent_addresses(self) -> dict[str, str]:
        """node → address of its agent."""
        agents = self.settings.agents
        if agents.discovery == "static":
            return dict(agents.nodes)
        return self.reader.agent_addresses(agents.namespace, agents.label_selector, agents.port)

    def dns_endpoints(self) -> tuple[EndpointRef, ...]:
        """The cluster DNS service's endpoints (kube-system/kube-dns, UDP 53)."""
        return dns_endpoint_refs(dns_endpoints(self.reader))

    async def investigate(
        self,
        text: str,
        *,
        on_step: StepCallback | None = None,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
        investigation_id: str | None = None,
        asker: Asker | None = None,
        trace: bool = False,
    ) -> InvestigationResult:
        """Run one investigation. Bad questions raise BadInput; unresolvable names end with a verdict.

        `trace` follows a marked probe hop by hop even when the probes succeed (the question's own
        "trace …" or "intermittent …" does the same)."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        inv_id = investigation_id or new_investigation_id(started_at)
        INVESTIGATION_ID.set(inv_id)
        question = parse_question(text)
        try:
            resolved = await asyncio.to_thread(
                self.reader.resolve,
                question,
                default_namespace=default_namespace or self.settings.default_namespace,
                allowed_namespaces=allowed_namespaces,
            )
        except ResolutionError as exc:
            choices = name_choices(question, exc)
            verdict = resolution_verdict(exc, choices)
            if self.history is not None:
                recorded = self.history.start(text, asker or cli_asker(), None, None, (), inv_id)
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
            addresses, dns_endpoints, upstreams = await asyncio.gather(
                asyncio.to_thread(self.agent_addresses),
                asyncio.to_thread(self.dns_endpoints),
                asyncio.to_thread(dns_upstreams, self.reader),
            )
        except ClusterUnavailable as exc:
            self._record_failure(text, asker, f"the Kubernetes API could not be asked: {exc.message}")
            raise
        # The seed the trace step derives its marked probe ports from: chosen here, so the playbook stays pure.
        case = dataclasses.replace(
            build_case(resolved, frozenset(addresses), dns_endpoints), marker_seed=secrets.randbits(32), dns_upstreams=upstreams
        )
        mode = question.trace_mode or ("path" if trace else "")
        if mode:
            case = dataclasses.replace(case, trace=mode)
        source_ref, target_ref = workload_refs(resolved)
        namespaces = tuple(
            sorted(
                # A node or a client outside has no namespace ("" in its stand-in PodRef).
                {p.namespace for p in case.sources if p.namespace}
                | {p.namespace for p in case.target_pods}
                | ({case.service.namespace} if case.service else set())
            )
        )
        recorded = None
        if self.history is not None:
            recorded = await asyncio.to_thread(
                self.history.start, text, asker or cli_asker(), source_ref, target_ref, namespaces, inv_id
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

        fleet = self._fleets.current(addresses)
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
            parsed=resolved.question,
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
            result = dataclasses.replace(result, seen_before=seen)
        return result

    def _record_failure(self, text: str, asker: Asker | None, error: str) -> None:
        """An investigation that could not run (the API did not answer) is recorded as failed, not lost."""
        if self.history is not None:
            self.history.fail(self.history.start(text, asker or cli_asker(), None, None, ()), error)

    async def aclose(self) -> None:
        """Close the agent channels (on the loop that opened them) and the cluster client."""
        await self._fleets.aclose()
        self.close()

    def close(self) -> None:
        """Release the cluster client, and the agent channels when their loop runs in another thread."""
        self._fleets.close()
        if self._cached is not None:
            self._cached.close()
            self._cached = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 1)


def serving_investigator(settings: BotSettings, history: HistoryRecorder | None, metrics: BotMetrics | None) -> Investigator:
    """The investigator of `kubereach serve`: its questions share the process's watch caches."""
    return Investigator(settings, history, metrics, watch_cluster=True)


def investigator_sweep(settings: BotSettings) -> Callable[[Sequence[str]], Coroutine[Any, Any, Sweep]]:
    """A digest sweep function over a new `Investigator` of `settings` (its cluster client and agents)."""
    # Imported here: the digest's modules are not needed by `ask`, a process per question.
    from bot.digest.sweep import sweep_cluster

    investigator = Investigator(settings)

    def sweep(namespaces: Sequence[str]) -> Coroutine[Any, Any, Sweep]:
        return sweep_cluster(investigator, namespaces)

    return sweep
