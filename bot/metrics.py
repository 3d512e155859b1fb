"""The bot's Prometheus series: investigations by verdict, step durations, agent fan-out, Slack API errors.

One `BotMetrics` per process (tests make their own), each with its own registry, never the global
one. The code that finishes an investigation, a step, an agent call or a Slack call reports it here;
`exposition()` renders the registry for `/metrics` (served on the bot's ops port, see
deploy/README.md). Label values come from bounded sets only: verdict codes, step names, node names,
RPC method names, Slack method names and Slack error codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from bot.verdicts import VerdictCode

if TYPE_CHECKING:
    from bot.fleet.client import AgentOutcome
    from bot.playbook.models import StepResult

STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
"""Seconds: a step is one API read or one fan-out round (deadline 20 s by default)."""
INVESTIGATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
"""Seconds: a whole investigation, question to verdict."""
AGENT_CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds: one RPC to one agent (deadline 4 s by default)."""


class BotMetrics:
    """The bot's series in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create every series in `registry` (a new one by default); verdict counters start at zero."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.investigations = Counter(
            "kubereach_investigations", "Investigations finished, by verdict code.", ["verdict"], registry=self.registry
        )
        self.investigation_seconds = Histogram(
            "kubereach_investigation_duration_seconds",
            "Time from question to verdict.",
            buckets=INVESTIGATION_BUCKETS,
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "kubereach_step_duration_seconds",
            "Time one playbook step took, by step and status.",
            ["step", "status"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.agent_call_seconds = Histogram(
            "kubereach_agent_call_duration_seconds",
            "Latency of one RPC to a node agent (answered or failed), by node and method.",
            ["node", "method"],
            buckets=AGENT_CALL_BUCKETS,
            registry=self.registry,
        )
        self.agent_call_errors = Counter(
            "kubereach_agent_call_errors",
            "RPCs to node agents that failed, by node, method and kind (unreachable, busy, timed_out, cancelled, not_found, …).",
            ["node", "method", "kind"],
            registry=self.registry,
        )
        self.slack_api_errors = Counter(
            "kubereach_slack_api_errors",
            "Slack Web API calls that failed, by API method and Slack's error code.",
            ["method", "error"],
            registry=self.registry,
        )
        for code in VerdictCode:
            self.investigations.labels(verdict=code.value)

    def investigation_finished(self, verdict: VerdictCode | str, seconds: float) -> None:
        """Count one finished investigation under its verdict code and record how long it took."""
        self.investigations.labels(verdict=str(verdict)).inc()
        self.investigation_seconds.observe(max(seconds, 0.0))

    def step_finished(self, step: StepResult) -> None:
        """Record one playbook step's duration under the kind its step set (no pod or node names) and status."""
        self.step_seconds.labels(step=step.kind, status=str(step.status)).observe(max(step.duration_ms, 0.0) / 1000)

    def agent_call_finished(self, outcome: AgentOutcome) -> None:
        """Record one fan-out call's latency, and its error kind when it failed."""
        self.agent_call_seconds.labels(node=outcome.node, method=outcome.method).observe(max(outcome.latency_ms, 0.0) / 1000)
        if not outcome.ok:
            kind = outcome.error_kind or "failed"
            self.agent_call_errors.labels(node=outcome.node, method=outcome.method, kind=kind).inc()

    def slack_api_failed(self, method: str, error: str) -> None:
        """Count one failed Slack Web API call (`error` is Slack's code, e.g. ``ratelimited``)."""
        self.slack_api_errors.labels(method=method, error=error or "unknown").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type, for `/metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
