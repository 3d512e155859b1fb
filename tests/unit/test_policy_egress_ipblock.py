"""`kubereach policy check` for egress to the outside world: a pod → an external IP, or a name with
the addresses it resolves to, says which policy denies it and which ipBlock `except` excludes it.
Run through the CLI entry point on manifest files, as a person would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot import cli as cli_module
from tests.unit.test_policy_cli import run_main
from tests.unit.test_policy_manifests import SHOP_OBJECTS, v1_list

# Egress from the frontend: anywhere except the documentation range 203.0.113.0/24 (a blocked
# partner network), DNS to the cluster, as people write it.
EGRESS_EXCEPT = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"namespace": "shop", "name": "frontend-egress"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "frontend"}},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "203.0.113.0/24"]}}]},
            {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]},
        ],
    },
}


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    cli_module._register()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(v1_list([*SHOP_OBJECTS, EGRESS_EXCEPT])))
    return path


def check(manifests: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli_module.cli, ["policy", "check", "--manifests", str(manifests), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout


def test_an_external_ip_cut_out_by_an_except_names_the_policy_and_the_ipblock(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/frontend-6c9f8", "--to", "203.0.113.10", "--port", "443", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["allowed"] is False
    assert payload["egress"]["policies"] == ["shop/frontend-egress"]
    assert payload["egress"]["excluded_by"] == [
        {"policy": "shop/frontend-egress", "rule": 0, "cidr": "0.0.0.0/0", "except": "203.0.113.0/24", "ip": "203.0.113.10"}
    ]
    assert "ipBlock 0.0.0.0/0 except 203.0.113.0/24 excludes 203.0.113.10" in payload["explanation"]
    assert payload["ingress"]["evaluated"] is False  # the outside host is no pod: nothing judges its ingress


def test_an_external_ip_the_ipblock_admits_is_allowed_with_nothing_excluded(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/frontend-6c9f8", "--to", "198.51.100.7", "--port", "443", "--json")
    payload = json.loads(out)
    assert (code, payload["allowed"], payload["egress"]["excluded_by"]) == (0, True, [])
    assert payload["egress"]["allowing_rules"] == [{"policy": "shop/frontend-egress", "rule": 0}]


def test_a_name_is_judged_for_each_of_its_addresses(manifests: Path) -> None:
    code, out = check(
        manifests, "--from", "shop/frontend-6c9f8", "--to", "example.com", "--address", "198.51.100.7",
        "--address", "203.0.113.10", "--port", "443", "--json",
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out)
    assert (payload["name"], payload["allowed"]) == ("example.com", False)
    by_ip = {a["destination"]: a for a in payload["addresses"]}
    assert by_ip["198.51.100.7"]["allowed"] is True
    assert by_ip["203.0.113.10"]["egress"]["excluded_by"][0]["except"] == "203.0.113.0/24"


def test_the_text_form_says_which_address_and_which_except(manifests: Path) -> None:
    code, out = check(
        manifests, "--from", "shop/frontend-6c9f8", "--to", "example.com", "--address", "203.0.113.10", "--port", "443"
    )
    assert code == 0
    assert out.startswith("DENIED  example.com: 1 of 1 address(es) denied")
    assert "shop/frontend-egress egress rule 0's ipBlock 0.0.0.0/0 except 203.0.113.0/24 excludes 203.0.113.10" in out


def test_a_pod_not_selected_by_the_egress_policy_reaches_the_excluded_range(manifests: Path) -> None:
    """The negative control: the except binds only the pods the policy selects."""
    code, out = check(manifests, "--from", "shop/api-5d7b9", "--to", "203.0.113.10", "--port", "443", "--json")
    payload = json.loads(out)
    assert (code, payload["allowed"], payload["egress"]["isolated"]) == (0, True, False)


def test_a_name_without_addresses_is_one_clear_error(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["policy", "check", "--manifests", str(manifests), "--from", "shop/frontend-6c9f8", "--to", "example.com"]
    code, out, err = run_main([*argv, "--port", "443"], capsys)
    assert code != 0 and not out
    assert "--to 'example.com' is a name" in err and "--address" in err
    code, _, err = run_main([*argv, "--address", "example.org", "--port", "443"], capsys)
    assert code != 0 and "--address 'example.org' is not an IP address" in err
