"""The kube-proxy layout setting travels from `lab up` to each node's kube-proxy process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli import lab
from lab.errors import LabError
from lab.kubeproxy.__main__ import settings_from_args
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT, NFT_LAYOUTS
from lab.plan import LabOptions, make_plan
from lab.spec import load_spec
from lab.state import LabState, load_state

BASE_ARGS = [
    "--node", "node-1", "--node-ip", "10.240.0.11", "--netns", "kr-node-1", "--api", "http://127.0.0.1:1",
    "--token-file", "/dev/null", "--mode", "nftables", "--cluster-cidr", "10.244.0.0/16", "--status-file", "/dev/null",
]  # fmt: skip


def test_the_default_layout_is_136_and_every_layout_is_accepted_by_the_process() -> None:
    assert DEFAULT_NFT_LAYOUT == "1.36"
    assert settings_from_args(BASE_ARGS)[0].nft_layout == "1.36"
    for layout in NFT_LAYOUTS:
        assert settings_from_args([*BASE_ARGS, "--nft-layout", layout])[0].nft_layout == layout


def test_the_process_refuses_an_unknown_layout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        settings_from_args([*BASE_ARGS, "--nft-layout", "1.99"])
    assert exited.value.code == 2
    assert "endpoint-chains" in capsys.readouterr().err


def test_the_plan_refuses_an_unknown_layout_naming_the_choices() -> None:
    with pytest.raises(LabError) as caught:
        make_plan(load_spec(), LabOptions(kube_proxy_layout="1.99"))  # type: ignore[arg-type]
    assert caught.value.exit_code == 2
    assert "1.36, endpoint-chains, single-endpoint" in str(caught.value)


def test_lab_up_refuses_an_unknown_layout_before_doing_anything() -> None:
    result = CliRunner().invoke(lab, ["--prefix", "kl", "up", "--kube-proxy-layout", "1.99"])
    assert result.exit_code == 2
    assert "single-endpoint" in result.output


def test_the_layout_is_kept_in_the_lab_state_and_old_states_read_as_the_default(tmp_path: Path) -> None:
    directory = tmp_path / "kl"
    directory.mkdir()
    state = LabState(prefix="kl", nodes=2, cni="calico", proxy="nftables", directory=str(directory), spec_file="",
                     kube_proxy_layout="single-endpoint")  # fmt: skip
    state.save()
    loaded = load_state("kl", tmp_path)
    assert loaded is not None and loaded.options.kube_proxy_layout == "single-endpoint"
    raw = json.loads((directory / "state.json").read_text())
    del raw["kube_proxy_layout"]  # a lab brought up before the setting existed
    (directory / "state.json").write_text(json.dumps(raw))
    old = load_state("kl", tmp_path)
    assert old is not None and old.options.kube_proxy_layout == DEFAULT_NFT_LAYOUT
