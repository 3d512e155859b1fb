"""`--kubernetes DIR`: every release binary is looked for, and a missing one is one clear message, before anything is built."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.cli import lab
from lab.errors import LabError
from lab.upstream.binaries import REQUIRED, find_binaries, kubernetes_version, parse_version

WHERE = (
    "get the official release binaries from the Kubernetes release page (kubernetes-server-linux-amd64.tar.gz) and etcd's release"
)


def _fake_release(directory: Path, *, skip: str | None = None, version_line: str = "Kubernetes v1.36.2") -> Path:
    """Stand-in executables with the release's names (shell scripts; no Kubernetes code)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED:
        if name == skip:
            continue
        path = directory / name
        path.write_text(f"#!/bin/sh\necho '{version_line}'\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_binary_is_named_with_where_to_get_it(tmp_path: Path, missing: str) -> None:
    release = _fake_release(tmp_path / "bin", skip=missing)
    with pytest.raises(LabError) as caught:
        find_binaries(release)
    assert str(caught.value) == f"{missing} not found in {release.resolve()}: {WHERE}"
    assert caught.value.exit_code == 2


def test_a_directory_that_does_not_exist_says_so(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"no such directory; get the official release binaries"):
        find_binaries(tmp_path / "nope")


def test_a_binary_without_execute_permission_is_named(tmp_path: Path) -> None:
    release = _fake_release(tmp_path / "bin")
    (release / "kube-proxy").chmod(0o644)
    if os.access(release / "kube-proxy", os.X_OK):
        pytest.skip("running as a user that may execute anything")
    with pytest.raises(LabError, match=r"kube-proxy in .* is not executable"):
        find_binaries(release)


def test_a_complete_directory_gives_every_path(tmp_path: Path) -> None:
    release = _fake_release(tmp_path / "bin")
    found = find_binaries(release)
    assert found.kube_apiserver == release / "kube-apiserver"
    assert found.etcd == release / "etcd"
    assert {p.name for p in (found.kube_controller_manager, found.kube_scheduler, found.kube_proxy, found.kubectl)} == {
        "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl",
    }  # fmt: skip


def test_the_version_is_what_kube_apiserver_reports(tmp_path: Path) -> None:
    assert kubernetes_version(find_binaries(_fake_release(tmp_path / "bin"))) == "v1.36.2"


def test_a_binary_that_reports_no_version_fails_clearly(tmp_path: Path) -> None:
    release = _fake_release(tmp_path / "bin", version_line="hello")
    with pytest.raises(LabError, match=r"did not report a Kubernetes version \(hello\)"):
        kubernetes_version(find_binaries(release))


@pytest.mark.parametrize(
    ("text", "version"),
    [("Kubernetes v1.36.2\n", "v1.36.2"), ("Kubernetes v1.37.0-alpha.1.12+abc\n", "v1.37.0-alpha.1.12+abc"), ("etcd", None)],
)
def test_parse_version(text: str, version: str | None) -> None:
    assert parse_version(text) == version


@pytest.mark.parametrize("how", ["flag", "env"])
def test_lab_up_fails_fast_with_the_message_before_building_anything(tmp_path: Path, how: str) -> None:
    release = _fake_release(tmp_path / "bin", skip="kube-apiserver")
    args = ["--prefix", "tkbin", "up"] + (["--kubernetes", str(release)] if how == "flag" else [])
    env = {"KUBEREACH_LAB_KUBERNETES": str(release)} if how == "env" else {}
    result = CliRunner().invoke(lab, args, env=env)
    assert result.exit_code == 2
    assert f"kube-apiserver not found in {release.resolve()}: {WHERE}" in result.output
    assert not Path("/run/kubereach/tkbin").exists()
