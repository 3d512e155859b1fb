"""The node-network faults' options, without a lab: which fault takes which option, how a node pair is
completed, and the values `lab fault` refuses before anything changes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lab.cli import lab
from lab.errors import LabError
from lab.faults import CATALOG, FaultOptions
from lab.faults.catalog import accepted_flags, check_options
from lab.faults.underlay import FabricMtuUndo, FabricTableUndo, NodeRuleUndo, overlay_port, resolve_pair
from lab.plan import LabOptions, make_plan
from lab.spec import load_spec


def test_each_node_network_fault_lists_the_options_it_takes() -> None:
    assert accepted_flags(CATALOG["underlay-drop"]) == ["--from", "--to"]
    assert accepted_flags(CATALOG["underlay-loss"]) == ["--from", "--to", "--percent"]
    assert accepted_flags(CATALOG["node-firewall-overlay"]) == ["--node"]
    assert accepted_flags(CATALOG["underlay-mtu"]) == ["--node", "--mtu"]
    traced = ("underlay-drop", "underlay-loss", "node-firewall-overlay", "underlay-mtu", "input-drop")
    assert all(CATALOG[n].needs_trace for n in traced)
    assert not any(f.needs_trace for n, f in CATALOG.items() if n not in traced)


@pytest.mark.parametrize(
    ("fault", "options", "flag", "hint"),
    [
        ("underlay-drop", FaultOptions(node="node-1"), "--node", "it takes --from, --to"),
        ("underlay-loss", FaultOptions(mtu=1300), "--mtu", "it takes --from, --to, --percent"),
        ("underlay-mtu", FaultOptions(percent=5), "--percent", "it takes --node, --mtu"),
        ("ip-forward-off", FaultOptions(from_node="node-1"), "--from", "it takes --node"),
        ("dns-down", FaultOptions(to_node="node-1"), "--to", "run `kubereach lab fault dns-down` alone"),
    ],
)
def test_an_option_the_fault_does_not_take_is_refused_with_what_it_takes(
    fault: str, options: FaultOptions, flag: str, hint: str
) -> None:
    with pytest.raises(LabError) as refused:
        check_options(CATALOG[fault], options)
    assert refused.value.exit_code == 2
    assert f"does not take {flag}" in str(refused.value) and refused.value.hint == hint


def test_the_catalog_s_first_options_stay_open_to_the_faults_pointed_only_with_them() -> None:
    # node faults read --pod to pick the remote node (tests/lab drive them so)
    check_options(CATALOG["node-route-missing"], FaultOptions(node="node-1", pod="shop/api-1"))
    check_options(CATALOG["underlay-loss"], FaultOptions(from_node="node-1", percent=10))
    check_options(CATALOG["underlay-mtu"], FaultOptions(node="node-2", mtu=1400))


def test_a_node_pair_is_completed_with_another_node_and_never_one_node_twice() -> None:
    plan = make_plan(load_spec(), LabOptions(prefix="kuuf", nodes=3))
    n1, n2, n3 = plan.nodes
    assert resolve_pair(plan, None, None) == (n1, n2)
    assert resolve_pair(plan, n3, None) == (n3, n1)
    assert resolve_pair(plan, None, n1) == (n2, n1)
    assert resolve_pair(plan, n3, n2) == (n3, n2)
    with pytest.raises(LabError, match="name two different nodes"):
        resolve_pair(plan, n2, n2)
    with pytest.raises(LabError, match="at least two nodes"):
        resolve_pair(make_plan(load_spec(), LabOptions(prefix="kuuf", nodes=1)), None, None)


def test_the_overlay_port_follows_the_cni() -> None:
    ports = {
        cni: overlay_port(make_plan(load_spec(), LabOptions(prefix="kuuf", cni=cni)))
        for cni in ("flannel-vxlan", "calico", "host-gw")
    }
    assert ports == {"flannel-vxlan": 8472, "calico": 4789, "host-gw": None}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--percent", "0"], "--percent"),
        (["--percent", "101"], "--percent"),
        (["--mtu", "1500"], "--mtu"),
        (["--mtu", "100"], "--mtu"),
    ],
)
def test_out_of_range_values_end_at_the_command_line(args: list[str], words: str) -> None:
    result = CliRunner().invoke(lab, ["--prefix", "kuuf", "fault", "underlay-loss", *args])
    assert result.exit_code == 2 and words in result.output


def test_undo_records_round_trip_through_the_state_json() -> None:
    for undo in (
        FabricTableUndo("vpc_filter_1"),
        FabricMtuUndo({"node1": 1500}),
        NodeRuleUndo("node-2", "filter", "INPUT", ["-j", "DROP"]),
    ):
        assert type(undo).from_json(undo.to_json()) == undo
