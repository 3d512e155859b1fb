"""Snapshots of a namespace's rules, reused while the nf_tables ruleset generation id is unchanged.

A `SnapshotCache` is an object owned by whoever reads the rules (the agent's `KernelChecks`, through
`KubeProxyTables`); there is no process-wide state. It keeps parsed tool output per (namespace, kind)
and trusts it while the ruleset generation id (NFT_MSG_GETGEN, one netlink round trip; iptables-nft
changes it too) stays the same. Rules written by iptables-legacy do not change that id, so snapshots
taken from a legacy backend expire after `LEGACY_SNAPSHOT_TTL` seconds instead. Full dumps can be
loaded on a background thread (`load_in_background`); `clear` cancels them. `tool_invocations`
counts the tool runs this cache made or decided to make.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.nat.model import NatStateError

T = TypeVar("T")
log = logging.getLogger("kubereach.agent.nat")

LEGACY_SNAPSHOT_TTL = 2.0
"""Seconds a snapshot is trusted when the generation id cannot see changes (iptables-legacy)."""
NO_GENERATION_TTL = 2.0
"""Seconds a snapshot is trusted when the generation id cannot be read at all."""
TOOL_TIMEOUT = 60.0
SO_NETNS_COOKIE = 71
MAX_CACHED_SNAPSHOTS = 256
_SELF_NETNS = "/proc/self/ns/net"


@dataclass(frozen=True)
class RulesetVersion:
    """Which namespace and which nf_tables generation a snapshot belongs to.

    The namespace is named by its netns cookie (SO_NETNS_COOKIE, never reused while the machine is
    up); where the kernel has none, by the device and inode of its nsfs file, which can be reused
    after a namespace is gone, so such snapshots also expire by age.
    """

    namespace: tuple[int, ...]
    generation: int | None


def ruleset_version(netns: str) -> RulesetVersion:
    """The namespace identity and nf_tables generation id (None when it cannot be read)."""
    st = os.stat(netns)
    fallback = RulesetVersion((st.st_dev, st.st_ino), None)
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return fallback
    try:
        try:
            cookie = int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
            namespace: tuple[int, ...] = (cookie,)
        except OSError:
            namespace = fallback.namespace
        return RulesetVersion(namespace, ctnetlink.nftables_generation(sock, netlink.next_seq()))
    except ctnetlink.NetfilterNetlinkError:
        return fallback
    finally:
        sock.close()


def ruleset_generation(netns: str) -> int | None:
    """The nf_tables generation id of the namespace, or None when it cannot be read."""
    return ruleset_version(netns).generation


def unchanged_since(netns: str, version: RulesetVersion) -> bool:
    """Whether the ruleset generation is still `version`'s: chains read one by one are consistent
    only when nothing changed meanwhile (else the caller answers from a full snapshot)."""
    return version.generation is not None and ruleset_version(netns) == version


@dataclass(frozen=True)
class _Snapshot:
    generation: int | None
    taken_at: float
    legacy: bool
    value: Any


class LoadCancelled(Exception):
    """A background load was cancelled by `SnapshotCache.clear`."""


@dataclass
class Loading:
    """A full snapshot being loaded on a background thread; waiters block on `done`."""

    version: RulesetVersion
    epoch: int
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    process: subprocess.Popen[str] | None = None
    cancelled: bool = False

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a tool that `cancel` can kill."""
        with self.lock:
            if self.cancelled:
                raise LoadCancelled
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.process.communicate(timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        if self.cancelled:
            raise LoadCancelled
        return subprocess.CompletedProcess(argv, self.process.returncode, out, err)

    def cancel(self) -> None:
        """Stop the load: kill its tool; its result is dropped."""
        with self.lock:
            self.cancelled = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()


def _fresh(snap: _Snapshot, version: RulesetVersion, now: float) -> bool:
    if snap.legacy:
        return now - snap.taken_at < LEGACY_SNAPSHOT_TTL
    if version.generation is None or snap.generation is None or len(version.namespace) != 1:
        return now - snap.taken_at < NO_GENERATION_TTL and snap.generation == version.generation
    return snap.generation == version.generation


class SnapshotCache:
    """Parsed rule snapshots per (namespace, kind), valid for one ruleset version; thread-safe."""

    def __init__(self) -> None:
        self._snapshots: dict[tuple[tuple[int, ...], str], _Snapshot] = {}
        self._loading: dict[tuple[tuple[int, ...], str], Loading] = {}
        self._lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._tool_runs = 0
        self._epoch = 0
        """Bumped by `clear`: loads started before a clear must not fill the cleared cache."""

    def tool_invocations(self) -> int:
        """How many times this cache has run iptables-save / nft / iptables (for tests and metrics)."""
        return self._tool_runs

    def _count(self, runs: int) -> None:
        with self._counter_lock:
            self._tool_runs += runs

    def clear(self) -> None:
        """Forget every cached snapshot and cancel the full loads still running in the background."""
        with self._lock:
            self._snapshots.clear()
            self._epoch += 1
            running = list(self._loading.values())
            self._loading.clear()
        for loading in running:
            loading.cancel()

    def run_tool(
        self, netns: str, argv: list[str], loading: Loading | None = None, count: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a tool in the namespace with a fixed argument vector (`nsenter --net=PATH …`)."""
        full = argv if netns == _SELF_NETNS else ["nsenter", f"--net={netns}", *argv]
        if count:
            self._count(1)
        try:
            if loading is None:
                return subprocess.run(full, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
            return loading.run(full)
        except FileNotFoundError as exc:
            raise NatStateError(
                f"`{full[0]}` is not installed on the node; install it (util-linux, iptables, nftables) in the agent image"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise NatStateError(
                f"`{' '.join(argv)}` took longer than {TOOL_TIMEOUT:.0f}s;"
                " the rule set is unusually large or the node is overloaded"
            ) from exc

    def peek(self, version: RulesetVersion, kind: str) -> Any:
        """The cached value for `kind` when it is fresh for `version`, else None (never loads)."""
        with self._lock:
            snap = self._snapshots.get((version.namespace, kind))
        return snap.value if snap is not None and _fresh(snap, version, time.monotonic()) else None

    def _store(self, version: RulesetVersion, kind: str, value: Any, legacy: bool, taken_at: float) -> None:
        with self._lock:
            if len(self._snapshots) >= MAX_CACHED_SNAPSHOTS:
                oldest = min(self._snapshots, key=lambda k: self._snapshots[k].taken_at)
                del self._snapshots[oldest]
            self._snapshots[(version.namespace, kind)] = _Snapshot(version.generation, taken_at, legacy, value)

    def loading_now(self, version: RulesetVersion, kind: str) -> bool:
        """Whether a background load of `kind` for this very version is running."""
        with self._lock:
            loading = self._loading.get((version.namespace, kind))
        return loading is not None and loading.version == version and not loading.cancelled

    def _wait_for_background(self, version: RulesetVersion, kind: str) -> None:
        """Block until a background load of `kind` for this very version finishes (no-op when none runs)."""
        with self._lock:
            loading = self._loading.get((version.namespace, kind))
        if loading is not None and loading.version == version:
            loading.done.wait(TOOL_TIMEOUT)

    def load_in_background(
        self, version: RulesetVersion, kind: str, load: Callable[[Loading], tuple[Any, bool]], tool_runs: int = 1
    ) -> None:
        """Start loading the full snapshot `kind` on a thread, unless it is cached or already loading.

        The tool runs are counted now, when the load is decided, so that `tool_invocations()` does
        not move later under a caller that is served from the cache this load fills.
        """
        key = (version.namespace, kind)
        with self._lock:
            current = self._loading.get(key)
            if current is not None and current.version == version and not current.cancelled:
                return
            loading = Loading(version, self._epoch)
            self._loading[key] = loading
        if self.peek(version, kind) is not None:
            with self._lock:
                self._loading.pop(key, None)
            loading.done.set()
            return
        self._count(tool_runs)

        def work() -> None:
            taken_at = time.monotonic()
            try:
                value, legacy = load(loading)
                with self._lock:
                    keep = not loading.cancelled and loading.epoch == self._epoch
                if keep:
                    self._store(version, kind, value, legacy, taken_at)
            except (LoadCancelled, NatStateError, OSError, subprocess.SubprocessError) as exc:
                log.debug("background load of %s stopped: %s", kind, exc)  # the next lookup loads in the foreground
            finally:
                with self._lock:
                    if self._loading.get(key) is loading:
                        del self._loading[key]
                loading.done.set()

        threading.Thread(target=work, name=f"nat-snapshot-{kind}", daemon=True).start()

    def cached(self, version: RulesetVersion, kind: str, load: Callable[[], tuple[T, bool]]) -> T:
        """The snapshot `kind` for `version`: cached, or awaited from a background load, or loaded now."""
        value = self.peek(version, kind)
        if value is not None:
            return value  # type: ignore[no-any-return]
        self._wait_for_background(version, kind)
        value = self.peek(version, kind)
        if value is not None:
            return value  # type: ignore[no-any-return]
        taken_at = time.monotonic()
        loaded, legacy = load()
        self._store(version, kind, loaded, legacy, taken_at)
        return loaded
