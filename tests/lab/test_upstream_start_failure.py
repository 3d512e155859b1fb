"""`lab up --kubernetes DIR` when a control-plane binary fails to start: one clear message naming the
process and its last log line, and everything already built (namespaces, agents, etcd, files) is gone.

The binaries here are stand-in shell scripts that report a version and then fail (no Kubernetes code);
the second test uses a real etcd when KUBEREACH_LAB_KUBERNETES holds one (marker `kubernetes`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from lab.upstream.binaries import REQUIRED
from tests.lab.labkit import kubereach, unique_prefix


def _stand_ins(directory: Path, real: dict[str, Path] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED:
        path = directory / name
        if real and name in real:
            path.symlink_to(real[name])
            continue
        script = (
            f"case \"$1\" in --version) echo 'Kubernetes v1.36.2';; *) echo '{name}: stand-in, cannot serve' >&2; exit 3;; esac"
        )
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return directory


def _leftovers(prefix: str) -> list[str]:
    found = (
        [f"netns {n}" for n in os.listdir("/var/run/netns") if n.startswith(f"{prefix}-")]
        if Path("/var/run/netns").exists()
        else []
    )
    if Path(f"/run/kubereach/{prefix}").exists():
        found.append(f"/run/kubereach/{prefix}")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if f"/run/kubereach/{prefix}/" in cmdline or f"--node-netns={prefix}-" in cmdline or f"{prefix}-node-" in cmdline:
                found.append(f"process {entry.name}: {cmdline[:80]}")
    return found


def _up(prefix: str, release: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBEREACH_LAB_KUBERNETES"}
    proc = kubereach("lab", "--prefix", prefix, "up", "--nodes", "1", "--kubernetes", str(release), check=False, env=env)
    kubereach("lab", "--prefix", prefix, "down", check=False, env=env)
    return proc.returncode, proc.stderr


@pytest.mark.lab
def test_a_control_plane_binary_that_exits_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    prefix = unique_prefix("uf")
    code, err = _up(prefix, _stand_ins(tmp_path / "bin"))
    assert code == 1
    assert "etcd exited while the lab waited for etcd to be healthy: etcd: stand-in, cannot serve" in err
    assert _leftovers(prefix) == []


@pytest.mark.kubernetes
@pytest.mark.lab
def test_with_a_real_etcd_up_a_failing_apiserver_takes_etcd_down_with_it(tmp_path: Path) -> None:
    etcd = Path(os.environ["KUBEREACH_LAB_KUBERNETES"]) / "etcd"
    if not etcd.is_file():
        pytest.skip(f"no etcd in {etcd.parent}")
    prefix = unique_prefix("ue")
    code, err = _up(prefix, _stand_ins(tmp_path / "bin", {"etcd": etcd.resolve()}))
    assert code == 1
    assert (
        "kube-apiserver exited while the lab waited for kube-apiserver to be ready: kube-apiserver: stand-in, cannot serve" in err
    )
    assert _leftovers(prefix) == []
