"""`kubereach policy check`: JSON shape, text output, name resolution and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bot import cli as cli_module
from tests.unit.test_policy_manifests import SHOP_OBJECTS, v1_list

MONITORING = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "monitoring"}},
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": "monitoring", "name": "prometheus-0", "labels": {"app": "prometheus"}},
        "spec": {"containers": [{"name": "prometheus", "ports": [{"containerPort": 9090, "name": "web"}]}]},
        "status": {"podIP": "10.244.2.13"},
    },
]


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    cli_module._register()


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(v1_list([*SHOP_OBJECTS, *MONITORING])))
    return path


def check(manifests: Path, *args: str) -> tuple[int, str]:
    """Run `kubereach policy check --manifests M ARGS` on the registered CLI group; (exit code, stdout)."""
    result = CliRunner().invoke(cli_module.cli, ["policy", "check", "--manifests", str(manifests), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`bot.cli.main`, the one place that maps errors to exit codes and messages."""
    with pytest.raises(SystemExit) as exited:
        cli_module.main(argv)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_allowed_flow_prints_json_with_both_directions(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/api-5d7b9", "--to", "payments/ledger-7f4c2", "--port", "8443", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["allowed"] is True
    assert set(payload) >= {"allowed", "egress", "ingress", "source", "destination", "port", "protocol"}
    assert payload["ingress"]["policies"] == ["payments/ledger-ingress"]
    assert payload["ingress"]["allowing_rules"] == [{"policy": "payments/ledger-ingress", "rule": 0}]
    assert payload["egress"] == {
        "evaluated": True,
        "pod": "shop/api-5d7b9",
        "isolated": False,
        "allowed": True,
        "policies": [],
        "allowing_rules": [],
        "rules": [],
        "reason": payload["egress"]["reason"],
        "excluded_by": [],
    }


def test_denied_flow_exits_zero_and_names_the_denying_policy(manifests: Path) -> None:
    code, out = check(manifests, "--from", "monitoring/prometheus-0", "--to", "payments/ledger-7f4c2", "--port", "8443", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["allowed"] is False
    assert payload["ingress"]["allowed"] is False and payload["ingress"]["isolated"] is True
    assert payload["ingress"]["policies"] == ["payments/ledger-ingress"]
    assert "at ingress" in payload["explanation"]


def test_text_output_has_a_verdict_line_and_one_line_per_direction(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/frontend-6c9f8", "--to", "payments/ledger-7f4c2", "--port", "8443")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "DENIED  pod shop/frontend-6c9f8 → pod payments/ledger-7f4c2 on TCP/8443"
    assert lines[1].startswith("  egress  allows: pod shop/frontend-6c9f8 is not isolated for egress")
    assert lines[2].startswith("  ingress DENIES: pod payments/ledger-7f4c2 is isolated for ingress by payments/ledger-ingress")


def test_named_port_is_resolved_on_the_destination(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/api-5d7b9", "--to", "payments/ledger-7f4c2", "--port", "https", "--json")
    assert code == 0
    assert json.loads(out)["port"] == 8443


def test_ip_destination_is_egress_only_and_a_pod_ip_means_the_pod(manifests: Path) -> None:
    code, out = check(manifests, "--from", "shop/api-5d7b9", "--to", "203.0.113.7", "--port", "443", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["destination"] == "203.0.113.7"
    assert payload["ingress"]["evaluated"] is False
    code, out = check(manifests, "--from", "10.244.1.10", "--to", "10.244.1.12", "--port", "8443", "--json")
    payload = json.loads(out)
    assert (payload["source"], payload["destination"]) == ("shop/frontend-6c9f8", "payments/ledger-7f4c2")
    assert payload["allowed"] is False


def test_unknown_pod_exits_2_with_one_line_naming_the_nearest_pods(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(
        [
            "policy",
            "check",
            "--manifests",
            str(manifests),
            "--from",
            "shop/api-5d7b9",
            "--to",
            "payments/ledgr",
            "--port",
            "8443",
        ],
        capsys,
    )
    assert code == 2
    assert out == ""
    assert err == "kubereach: --to: no pod payments/ledgr in the manifests; nearest: payments/ledger-7f4c2\n"


@pytest.mark.parametrize("port", ["0", "70000", "http-alt"])
def test_bad_port_exits_2(manifests: Path, capsys: pytest.CaptureFixture[str], port: str) -> None:
    code, _, err = run_main(
        [
            "policy",
            "check",
            "--manifests",
            str(manifests),
            "--from",
            "shop/api-5d7b9",
            "--to",
            "payments/ledger-7f4c2",
            "--port",
            port,
        ],
        capsys,
    )
    assert code == 2
    assert err.startswith(f"kubereach: --port {port}") or err.startswith(f"kubereach: --port '{port}'")
    assert err.count("\n") == 1


def test_unreadable_manifest_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Pod\nmetadata: {name: [x\n")
    code, _, err = run_main(
        ["policy", "check", "--manifests", str(broken), "--from", "a/b", "--to", "c/d", "--port", "80"], capsys
    )
    assert code == 2
    assert err.startswith(f"kubereach: {broken}: document 1: not valid YAML")
    assert err.count("\n") == 1


def test_unknown_protocol_is_a_usage_error(manifests: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_main(
        [
            "policy",
            "check",
            "--manifests",
            str(manifests),
            "--from",
            "shop/api-5d7b9",
            "--to",
            "payments/ledger-7f4c2",
            "--port",
            "80",
            "--protocol",
            "ICMP",
        ],
        capsys,
    )
    assert code == 2


def test_console_script_runs_the_check(manifests: Path) -> None:
    script = Path(sys.executable).parent / "kubereach"
    result = subprocess.run(
        [
            str(script),
            "policy",
            "check",
            "--manifests",
            str(manifests),
            "--from",
            "shop/api-5d7b9",
            "--to",
            "payments/ledger-7f4c2",
            "--port",
            "8443",
            "--protocol",
            "tcp",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["allowed"] is True
