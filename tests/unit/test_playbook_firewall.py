"""The node firewall check in the playbook: where a drop sits decides its code, and the remediation
speaks the rule's own backend (recorded two-node cluster of `test_playbook_engine`, no lab)."""

from __future__ import annotations

import dataclasses
from typing import Any

from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import FilterHit, FilterView, Observed
from bot.playbook.remedies import firewall_commands
from tests.unit.test_playbook_engine import RecordedCluster, verdict_of

FAILING = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}


def test_a_native_nftables_forward_drop_on_the_destination_node_names_table_chain_and_handle() -> None:
    cluster = RecordedCluster()
    hit = FilterHit("inet filter", "forward", "ip daddr 10.244.2.0/24 drop", backend="nftables", hook="forward", handle=11)
    cluster.forward_drops = {"node-2": (hit,)}
    cluster.failing_probes = FAILING
    verdict = verdict_of(cluster).verdict
    assert (verdict.code, verdict.hop, verdict.node) == (VerdictCode.FORWARD_CHAIN_DROPS, Hop.DESTINATION_NODE, "node-2")
    assert "nftables table inet filter chain forward on node-2" in verdict.summary
    assert "nft delete rule inet filter forward handle 11" in verdict.remediation


def test_a_drop_on_the_input_hook_is_the_node_firewall_not_the_forward_chain() -> None:
    cluster = RecordedCluster()
    hit = FilterHit("inet filter", "input", "policy drop", backend="nftables", hook="input")
    cluster.forward_drops = {"node-2": (hit,)}
    cluster.failing_probes = FAILING
    verdict = verdict_of(cluster).verdict
    assert (verdict.code, verdict.hop, verdict.node) == (VerdictCode.NODE_FIREWALL_DROPS, Hop.DESTINATION_NODE, "node-2")
    assert "input hook" in verdict.summary
    assert any("policy accept" in line for line in verdict.remediation)


def test_a_drop_on_the_source_nodes_output_hook_is_the_node_firewall_at_the_source() -> None:
    cluster = RecordedCluster()
    hit = FilterHit("filter", "OUTPUT", "-A OUTPUT -d 10.244.2.0/24 -j REJECT", "REJECT", "iptables-legacy", "output")
    cluster.forward_drops = {"node-1": (hit,)}
    cluster.failing_probes = FAILING
    verdict = verdict_of(cluster).verdict
    assert (verdict.code, verdict.hop, verdict.node) == (VerdictCode.NODE_FIREWALL_DROPS, Hop.SOURCE_NODE, "node-1")
    assert "iptables-legacy -t filter -D OUTPUT -d 10.244.2.0/24 -j REJECT" in verdict.remediation


def test_remediation_fits_each_backend() -> None:
    nft_rule = {"backend": "nftables", "table": "ip site", "chain": "deny", "rule": "reject", "handle": "11"}
    assert firewall_commands(nft_rule)[-1] == "nft delete rule ip site deny handle 11"
    nft_policy = {"backend": "nftables", "table": "inet filter", "chain": "forward", "rule": "policy drop"}
    assert firewall_commands(nft_policy)[-1].startswith("nft chain inet filter forward '{ policy accept; }'")
    ipt = {"backend": "iptables-nft", "table": "filter", "chain": "KT-FWD", "rule": "-A KT-FWD -s 10.244.1.0/24 -j DROP"}
    assert firewall_commands(ipt)[-1] == "iptables -t filter -D KT-FWD -s 10.244.1.0/24 -j DROP"
    legacy_policy = {"backend": "iptables-legacy", "table": "filter", "chain": "FORWARD", "rule": "-P FORWARD DROP"}
    assert firewall_commands(legacy_policy)[-1] == "iptables-legacy -t filter -P FORWARD ACCEPT"


def test_a_rule_set_the_agent_could_not_read_is_not_checked_never_no_drop() -> None:
    cluster = RecordedCluster()
    plain = cluster.filter_state
    why = "iptables-legacy tables (filter) exist but could not be read: iptables-legacy-save failed"

    async def unreadable(node: str, **flow: Any) -> Observed[FilterView]:
        observed = await plain(node, **flow)
        if node == "node-2" and observed.value is not None:
            return dataclasses.replace(observed, value=dataclasses.replace(observed.value, not_checked=(why,)))
        return observed

    cluster.filter_state = unreadable  # type: ignore[method-assign]
    cluster.failing_probes = FAILING
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code == VerdictCode.AGENT_UNREACHABLE
    assert "iptables-legacy" in diagnosis.verdict.summary and "node-2" in diagnosis.verdict.summary
