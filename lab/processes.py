"""The lab's processes: pod servers, the API daemon, kube-proxies and agents.

Each runs detached in its own session with its output in the lab's log directory. A process tells
the lab it is ready by writing a line to an inherited pipe, so start-up waits on readiness, not on
time. Teardown finds lab processes twice over: from the recorded pids, and by scanning /proc for any
process inside a lab namespace or naming one on its command line — so `lab down` also cleans up
after a crash.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError


@dataclass(frozen=True)
class Started:
    """A started process and the read end of its readiness pipe."""

    name: str
    pid: int
    ready_fd: int | None
    log: Path


def spawn(name: str, argv: list[str], log: Path, *, with_ready_pipe: bool, env: dict[str, str] | None = None) -> Started:
    """Start `argv` detached; when `with_ready_pipe`, `{ready_fd}` in argv is replaced by the pipe's write end."""
    log.parent.mkdir(parents=True, exist_ok=True)
    read_fd: int | None = None
    pass_fds: tuple[int, ...] = ()
    if with_ready_pipe:
        read_fd, write_fd = os.pipe()
        argv = [a.replace("{ready_fd}", str(write_fd)) for a in argv]
        pass_fds = (write_fd,)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
            env=env,
        )
    if pass_fds:
        os.close(pass_fds[0])
    return Started(name, proc.pid, read_fd, log)


def wait_ready(started: Iterable[Started], deadline_s: float) -> dict[str, str]:
    """Wait until every process wrote its readiness line; return what each wrote.

    A process that exits or stays silent past the deadline fails the start with its log's last line.
    """
    pending = {s.ready_fd: s for s in started if s.ready_fd is not None}
    buffers: dict[int, bytes] = {fd: b"" for fd in pending}
    answers: dict[str, str] = {}
    end = time.monotonic() + deadline_s
    try:
        while pending:
            left = end - time.monotonic()
            if left <= 0:
                slow = next(iter(pending.values()))
                raise LabError(f"{slow.name} did not become ready within {deadline_s:.0f} s: {last_log_line(slow.log)}")
            readable, _, _ = select.select(list(pending), [], [], min(left, 0.5))
            for fd in readable:
                chunk = os.read(fd, 4096)
                buffers[fd] += chunk
                if b"\n" in buffers[fd] or not chunk:
                    s = pending.pop(fd)
                    os.close(fd)
                    if not chunk and b"\n" not in buffers[fd]:
                        raise LabError(f"{s.name} exited while starting: {last_log_line(s.log)}")
                    answers[s.name] = buffers[fd].decode().splitlines()[0]
    finally:
        for fd in pending:
            os.close(fd)
    return answers


def last_log_line(log: Path) -> str:
    """The last non-empty line of a log, for error messages."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def alive(pid: int) -> bool:
    """True when `pid` is a live process (not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _netns_inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def find_lab_processes(netns_names: Iterable[str], markers: Iterable[str]) -> set[int]:
    """Pids of processes inside one of the lab's namespaces or naming one of them (or a marker) in argv."""
    names = set(netns_names)
    inodes = {ino for n in names if (ino := _netns_inode(Path("/var/run/netns") / n)) is not None}
    marks = set(markers) | names
    me = os.getpid()
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            if inodes and os.stat(entry / "ns" / "net").st_ino in inodes:
                found.add(pid)
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\x00")
        except OSError:
            continue
        if any(a.decode(errors="replace") in marks for a in argv if a):
            found.add(pid)
    return found


def stop(pids: Iterable[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace_s` (SIGCONT first: stopped ones too)."""
    targets = [p for p in set(pids) if alive(p)]
    for pid in targets:
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
    end = time.monotonic() + grace_s
    while time.monotonic() < end and any(alive(p) for p in targets):
        _reap()
        time.sleep(0.02)
    for pid in targets:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _reap()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
