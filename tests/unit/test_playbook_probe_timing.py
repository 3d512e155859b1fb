"""How the playbook spends time on probes: a probe that only confirms a deny the NetworkPolicies
already decided waits briefly, and a source's probes go out before its node steps end.

Observations are the recorded two-node cluster of `test_playbook_engine`, with each probe's
requested wait recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.playbook.engine import run_playbook
from bot.playbook.models import VerdictCode
from bot.playbook.observations import NodeFacts, Observed, ProbeView
from bot.playbook.steps.probe_asks import DENIED_PROBE_TIMEOUT_MS
from tests.unit.test_playbook_engine import API, SVC, RecordedCluster, case
from tests.unit.test_playbook_verdict_codes import _deny_all, _policies


class WaitsRecorded(RecordedCluster):
    """Records (target, timeout_ms) of every TCP probe."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[tuple[str, int | None]] = []
        self.probed = asyncio.Event()

    async def probe(
        self, node: str, *, pod_ip: str, target: str, port: int, protocol: str, timeout_ms: int | None = None
    ) -> Observed[ProbeView]:
        self.waits.append((target, timeout_ms))
        self.probed.set()
        return await super().probe(node, pod_ip=pod_ip, target=target, port=port, protocol=protocol, timeout_ms=timeout_ms)


def test_probes_that_only_confirm_a_policy_deny_wait_briefly() -> None:
    cluster = WaitsRecorded()
    cluster.failing_probes = {SVC.cluster_ip: "timed_out", API.ip or "": "timed_out"}
    c = case(policy_cluster=_policies(_deny_all("api-no-ingress", {"app": "api"}, "Ingress")))
    diagnosis = asyncio.run(run_playbook(c, cluster))
    assert diagnosis.verdict.code == VerdictCode.NETWORK_POLICY_DENIES_INGRESS
    assert set(cluster.waits) == {(SVC.cluster_ip, DENIED_PROBE_TIMEOUT_MS), (API.ip, DENIED_PROBE_TIMEOUT_MS)}


def test_probes_of_a_flow_no_policy_denies_wait_the_full_timeout() -> None:
    cluster = WaitsRecorded()
    c = case(policy_cluster=_policies(_deny_all("web-no-ingress", {"app": "web"}, "Ingress")))  # denies nothing asked
    diagnosis = asyncio.run(run_playbook(c, cluster))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert set(cluster.waits) == {(SVC.cluster_ip, None), (API.ip, None)}


def test_a_sources_probes_go_out_before_its_node_steps_end() -> None:
    class NodeWaitsForAProbe(WaitsRecorded):
        async def node_facts(self, node: str) -> Observed[NodeFacts]:
            # The node's answer arrives only after a probe was sent: were the probes sent after the
            # node steps, this would wait until the guard below fails the test.
            await asyncio.wait_for(self.probed.wait(), timeout=10)
            return await super().node_facts(node)

    async def run(cluster: RecordedCluster) -> Any:
        return await run_playbook(case(), cluster)

    cluster = NodeWaitsForAProbe()
    diagnosis = asyncio.run(run(cluster))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert any(s.name.endswith(": probes") and s.status.value == "pass" for s in diagnosis.steps)
