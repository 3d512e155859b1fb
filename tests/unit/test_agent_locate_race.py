"""Locating a pod while other namespaces come and go: `ip netns add` creates the file under
/run/netns before it bind-mounts the namespace on it, and `ip netns del` unmounts before it unlinks,
so a listed namespace may be a plain file when the agent asks the kernel for its nsid (EINVAL).
That namespace is skipped; it is never an error of the whole lookup."""

from __future__ import annotations

import os
from pathlib import Path

from pyroute2 import IPRoute

from nodeagent.checks.locate import NamespaceRef, _nsids


def test_a_listed_namespace_that_is_a_plain_file_is_skipped(tmp_path: Path) -> None:
    plain = tmp_path / "being-added"
    plain.write_bytes(b"")
    own = NamespaceRef(path="/proc/self/ns/net", inode=os.stat("/proc/self/ns/net").st_ino, name=None, pid=os.getpid())
    with IPRoute() as ipr:
        found = _nsids(ipr, (NamespaceRef(path=str(plain), inode=plain.stat().st_ino, name="being-added", pid=None), own))
    assert all(ref.path != str(plain) for refs in found.values() for ref in refs)
