"""Cgroups for the lab's host-network pods, placed as kubelet places a pod's processes.

A host-network pod's sockets live in its node's namespace beside everything else the node runs; what
says that a listener is the pod's own is the cgroup of the process holding it: kubelet puts every
process of a pod under a cgroup naming the pod's UID (`kubepods/besteffort/pod<uid>` with the cgroupfs
driver). The lab does the same for the servers of its host-network pods, under a directory carrying
the lab's prefix (`<prefix>-lab/kubepods/…`), in the unified hierarchy on a cgroup v2 machine, else in
cgroup v1's `pids` hierarchy (no limit is set: the cgroup only names the owner). `lab down` removes the
directory once the processes are gone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from lab.errors import LabError

CGROUP_ROOT = Path("/sys/fs/cgroup")


def hierarchy(root: Path = CGROUP_ROOT) -> Path:
    """Where the lab's pod cgroups go: the unified tree (cgroup v2), else v1's pids, else v1's unified mount."""
    if (root / "cgroup.controllers").exists():
        return root
    for name in ("pids", "unified"):
        if (root / name / "cgroup.procs").exists():
            return root / name
    raise LabError(f"no cgroup hierarchy to place host-network pods in under {root}", exit_code=1)


def lab_root(prefix: str, root: Path = CGROUP_ROOT) -> Path:
    """The lab's own directory in the hierarchy (carries the prefix, so `down` finds it)."""
    return hierarchy(root) / f"{prefix}-lab"


def pod_cgroup(prefix: str, uid: str, root: Path = CGROUP_ROOT) -> Path:
    """The cgroup a pod's processes go in, named as kubelet's cgroupfs driver names it."""
    return lab_root(prefix, root) / "kubepods" / "besteffort" / f"pod{uid}"


def place(prefix: str, uid: str, pid: int, root: Path = CGROUP_ROOT) -> Path:
    """Move process `pid` (and so everything it starts) into the pod's cgroup."""
    path = pod_cgroup(prefix, uid, root)
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.procs").write_text(f"{pid}\n")
    return path


def remove(prefix: str, root: Path = CGROUP_ROOT) -> list[str]:
    """Delete the lab's cgroup directories, deepest first (a cgroup with processes left stays). Safe twice."""
    try:
        top = lab_root(prefix, root)
    except LabError:
        return []
    if not top.is_dir():
        return []
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, top]:
        with contextlib.suppress(OSError):
            d.rmdir()
    return [str(top)]
