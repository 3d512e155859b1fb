"""The Prometheus series the chart's ServiceMonitors scrape exist and move when the events they count happen.

`bot.metrics` and `nodeagent.metrics` define the series issue 7 names (investigations by verdict,
step durations, fan-out latency and errors per node, Slack API errors; agent RPC latency and errors
per method, conntrack fill). Each test uses its own registry and reads it back through Prometheus'
own text-format parser, as a scrape would.
"""

from __future__ import annotations

import errno

from prometheus_client.parser import text_string_to_metric_families

from bot.fleet.client import AgentOutcome
from bot.metrics import BotMetrics
from bot.playbook.models import StepResult, StepStatus, VerdictCode
from nodeagent.checks.conntrack import ConntrackStats
from nodeagent.errors import KernelQueryFailed
from nodeagent.metrics import AgentMetrics


def scrape(exposition: tuple[bytes, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name and sorted labels -> value, from the text the registry exposes."""
    body, content_type = exposition
    assert content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_every_verdict_has_a_counter_from_the_start() -> None:
    samples = scrape(BotMetrics().exposition())
    for code in VerdictCode:
        assert samples[("kubereach_investigations_total", (("verdict", code.value),))] == 0


def test_a_finished_investigation_counts_under_its_verdict_with_its_duration() -> None:
    metrics = BotMetrics()
    metrics.investigation_finished(VerdictCode.NO_FAULT_FOUND, 1.5)
    metrics.investigation_finished(VerdictCode.NO_FAULT_FOUND, 2.5)
    samples = scrape(metrics.exposition())
    assert samples[("kubereach_investigations_total", (("verdict", "NO_FAULT_FOUND"),))] == 2
    assert samples[("kubereach_investigation_duration_seconds_count", ())] == 2
    assert samples[("kubereach_investigation_duration_seconds_sum", ())] == 4.0


def test_step_durations_are_kept_per_step_and_status_in_seconds() -> None:
    metrics = BotMetrics()
    step = StepResult("source web-1: service NAT", StepStatus.FAIL, "no endpoints", duration_ms=250.0, kind="service_nat")
    metrics.step_finished(step)
    samples = scrape(metrics.exposition())
    labels = (("status", "fail"), ("step", "service_nat"))
    assert samples[("kubereach_step_duration_seconds_count", labels)] == 1
    assert samples[("kubereach_step_duration_seconds_sum", labels)] == 0.25
    assert samples[("kubereach_step_duration_seconds_bucket", tuple(sorted((*labels, ("le", "0.25")))))] == 1
    assert samples[("kubereach_step_duration_seconds_bucket", tuple(sorted((*labels, ("le", "0.1")))))] == 0


def test_fan_out_latency_and_errors_are_per_node_and_method() -> None:
    metrics = BotMetrics()
    metrics.agent_call_finished(AgentOutcome("node-1", "LookupRoute", True, latency_ms=12.0))
    metrics.agent_call_finished(
        AgentOutcome("node-2", "LookupRoute", False, error="no answer", error_kind="unreachable", latency_ms=4000.0)
    )
    samples = scrape(metrics.exposition())
    assert samples[("kubereach_agent_call_duration_seconds_count", (("method", "LookupRoute"), ("node", "node-1")))] == 1
    assert samples[("kubereach_agent_call_duration_seconds_count", (("method", "LookupRoute"), ("node", "node-2")))] == 1
    errors = {k: v for k, v in samples.items() if k[0] == "kubereach_agent_call_errors_total"}
    assert errors == {
        ("kubereach_agent_call_errors_total", (("kind", "unreachable"), ("method", "LookupRoute"), ("node", "node-2"))): 1
    }


def test_slack_api_errors_are_counted_by_method_and_code() -> None:
    metrics = BotMetrics()
    metrics.slack_api_failed("chat.update", "ratelimited")
    samples = scrape(metrics.exposition())
    assert samples[("kubereach_slack_api_errors_total", (("error", "ratelimited"), ("method", "chat.update")))] == 1


def test_agent_rpc_latency_counts_every_call_and_errors_only_failures() -> None:
    metrics = AgentMetrics()
    metrics.rpc_finished("GetServiceNat", 0.004)
    metrics.rpc_finished("GetServiceNat", 0.002, code="INVALID_ARGUMENT")
    metrics.rpc_finished("GetServiceNat", 0.003, code="OK")
    samples = scrape(metrics.exposition())
    assert samples[("kubereach_agent_rpc_duration_seconds_count", (("method", "GetServiceNat"),))] == 3
    errors = {k: v for k, v in samples.items() if k[0] == "kubereach_agent_rpc_errors_total"}
    assert errors == {("kubereach_agent_rpc_errors_total", (("code", "INVALID_ARGUMENT"), ("method", "GetServiceNat"))): 1}


def _stats(count: int, maximum: int) -> ConntrackStats:
    return ConntrackStats(
        count=count, max=maximum, found=0, invalid=0, insert=0, insert_failed=0, drop=0, early_drop=0, search_restart=0
    )


def test_conntrack_fill_is_read_at_each_scrape() -> None:
    table = {"count": 1000}
    metrics = AgentMetrics(conntrack_stats=lambda: _stats(table["count"], 262144))
    first = scrape(metrics.exposition())
    table["count"] = 131072
    second = scrape(metrics.exposition())
    assert first[("kubereach_agent_conntrack_entries", ())] == 1000
    assert second[("kubereach_agent_conntrack_entries", ())] == 131072
    assert second[("kubereach_agent_conntrack_max", ())] == 262144
    assert second[("kubereach_agent_conntrack_fill_ratio", ())] == 0.5


def test_an_unreadable_conntrack_table_drops_the_series_and_counts_the_failure() -> None:
    def unreadable() -> ConntrackStats:
        raise KernelQueryFailed("reading conntrack statistics", errno.EPERM)

    samples = scrape(AgentMetrics(conntrack_stats=unreadable).exposition())
    assert ("kubereach_agent_conntrack_entries", ()) not in samples
    assert samples[("kubereach_agent_conntrack_read_errors_total", ())] == 1
