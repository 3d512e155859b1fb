"""The official release binaries the upstream lab runs, found in one directory.

Users get them from the Kubernetes release downloads (`kubernetes-server-linux-amd64.tar.gz`, whose
`server/bin/` holds kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy and kubectl)
and from etcd's GitHub releases (`etcd-vX.Y.Z-linux-amd64.tar.gz`). The lab never downloads or builds them.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

REQUIRED = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "etcd")
"""Every binary `--kubernetes DIR` needs, in the order they are looked for."""
ENV_VAR = "KUBEREACH_LAB_KUBERNETES"
"""The environment variable that stands for `--kubernetes DIR`."""
WHERE_TO_GET = (
    "get the official release binaries from the Kubernetes release page (kubernetes-server-linux-amd64.tar.gz) and etcd's release"
)
_VERSION = re.compile(r"\bv\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?")


@dataclass(frozen=True)
class UpstreamBinaries:
    """Absolute paths of the release binaries."""

    directory: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kube_proxy: Path
    kubectl: Path
    etcd: Path


def find_binaries(directory: str | os.PathLike[str]) -> UpstreamBinaries:
    """The binaries in `directory`, or one LabError naming the first one missing and where to get it."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise LabError(f"--kubernetes {root}: no such directory; {WHERE_TO_GET}", exit_code=2)
    root = root.resolve()
    found: dict[str, Path] = {}
    for name in REQUIRED:
        path = root / name
        if not path.is_file():
            raise LabError(f"{name} not found in {root}: {WHERE_TO_GET}", exit_code=2)
        if not os.access(path, os.X_OK):
            raise LabError(f"{name} in {root} is not executable: chmod +x {path}", exit_code=2)
        found[name.replace("-", "_")] = path
    return UpstreamBinaries(directory=root, **found)


def parse_version(text: str) -> str | None:
    """The version in `kube-apiserver --version` output ("Kubernetes v1.36.2" → "v1.36.2")."""
    match = _VERSION.search(text)
    return match.group(0) if match else None


def kubernetes_version(binaries: UpstreamBinaries) -> str:
    """Run `kube-apiserver --version` and return the upstream version it reports."""
    try:
        proc = subprocess.run(
            [str(binaries.kube_apiserver), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot run {binaries.kube_apiserver} --version ({exc}); {WHERE_TO_GET}") from exc
    version = parse_version(proc.stdout + proc.stderr)
    if proc.returncode != 0 or version is None:
        said = (proc.stdout + proc.stderr).strip().splitlines()
        raise LabError(
            f"{binaries.kube_apiserver} --version did not report a Kubernetes version "
            f"({said[-1] if said else f'exit {proc.returncode}'}); {WHERE_TO_GET}"
        )
    return version
