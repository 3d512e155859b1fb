"""Lab scenarios without a lab: listed by `lab scenario`, kept apart from the fault catalog (whose every
entry breaks a path), refused by name before anything changes, and healed from their stored record."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from lab.cli import lab
from lab.errors import LabError
from lab.faults import CATALOG
from lab.faults.catalog import start_scenario
from lab.faults.scenarios import SCENARIOS, ForeignProxyUndo


def test_scenarios_are_listed_and_are_not_faults() -> None:
    result = CliRunner().invoke(lab, ["--prefix", "ks", "scenario"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("foreign-service-proxy ")
    assert "expect NO_FAULT_FOUND" in result.output
    assert not set(SCENARIOS) & set(CATALOG)


def test_an_unknown_scenario_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(LabError) as refused:
        start_scenario("ks", "cilium")
    assert refused.value.exit_code == 2
    assert "unknown scenario 'cilium'; choose one of: foreign-service-proxy" in str(refused.value)


@pytest.mark.parametrize(
    "undo",
    [ForeignProxyUndo("node-2", "nftables"), ForeignProxyUndo("node-1", "iptables", "*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n")],
)
def test_the_undo_record_survives_the_lab_states_json(undo: ForeignProxyUndo) -> None:
    stored = json.loads(json.dumps(undo.to_json()))
    assert ForeignProxyUndo.from_json(stored) == undo
