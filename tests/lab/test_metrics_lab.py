"""After an investigation on the lab, the bot's and the agents' /metrics show their series."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.investigation import Investigator
from bot.metrics import BotMetrics
from bot.ops import OpsServer
from bot.settings import load_settings
from tests.lab.labkit import running_lab, unique_prefix

pytestmark = pytest.mark.lab


def scrape(address: str, path: str = "/metrics") -> tuple[int, str]:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def conntrack_samples(text: str) -> dict[str, float]:
    """The agent's conntrack samples in a scrape, by sample name, read with Prometheus' own text parser."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("kubereach_agent_conntrack_")
    }


def test_bot_and_agent_metrics_show_investigations_steps_fan_out_rpcs_and_conntrack() -> None:
    with running_lab(unique_prefix("x"), "--nodes", "2") as lab:
        metrics = BotMetrics()
        investigator = Investigator(load_settings(Path(lab.status["config"])), None, metrics)
        try:
            result = asyncio.run(investigator.investigate("why can't frontend reach ledger"))
        finally:
            investigator.close()
        assert result.verdict.code.value == "NETWORK_POLICY_DENIES_INGRESS"
        ops = OpsServer(metrics, lambda: True, "127.0.0.1", 0).start()
        try:
            status, text = scrape(f"127.0.0.1:{ops.port}")
            assert status == 200
            assert 'kubereach_investigations_total{verdict="NETWORK_POLICY_DENIES_INGRESS"} 1.0' in text
            assert 'kubereach_step_duration_seconds_count{status="fail",step="source: policy"}' in text
            for node in ("node-1", "node-2"):
                assert f'kubereach_agent_call_duration_seconds_count{{method="GetNodeInfo",node="{node}"}}' in text
            assert scrape(f"127.0.0.1:{ops.port}", "/healthz") == (200, "ok\n")
            assert scrape(f"127.0.0.1:{ops.port}", "/readyz") == (200, "ready\n")
        finally:
            ops.stop()
        for node in lab.status["nodes"]:
            status, text = scrape(node["metrics"])
            assert status == 200
            assert 'kubereach_agent_rpc_duration_seconds_count{method="GetNodeInfo"}' in text
            conntrack = conntrack_samples(text)
            # The table was read at this scrape: count, limit and ratio are there and agree; no read failed.
            assert conntrack["kubereach_agent_conntrack_max"] > 0, node["name"]
            assert 0 <= conntrack["kubereach_agent_conntrack_entries"] <= conntrack["kubereach_agent_conntrack_max"]
            assert conntrack["kubereach_agent_conntrack_fill_ratio"] == pytest.approx(
                conntrack["kubereach_agent_conntrack_entries"] / conntrack["kubereach_agent_conntrack_max"]
            )
            assert conntrack["kubereach_agent_conntrack_read_errors_total"] == 0
