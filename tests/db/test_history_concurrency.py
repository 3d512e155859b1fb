"""Issue 11, item 2: every investigation lands and none stays `running` after its process ended.

Many writer processes at once (each opening, migrating and recording, as `kubereach ask` does),
many threads inside one process (as `kubereach serve` does), and a process killed mid-investigation
whose row the next process marks interrupted — on SQLite (the default) and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text

from bot.history import service
from bot.history.enums import Origin
from bot.history.recorder import HistoryRecorder
from bot.history.service import Person
from tests.db.conftest import BACKENDS, _postgres_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database per test: the writers race to create the schema too."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'history.db'}"
        return
    yield from _postgres_database(f"{request.module.__name__}_{request.node.name}")


def writer(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.db.history_writer", url, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def statuses(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(text("SELECT public_id, status FROM investigations")).all())  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_two_dozen_concurrent_writer_processes_all_land(fresh_url: str) -> None:
    procs = [writer(fresh_url, "--steps", "10") for _ in range(24)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 24, [err[-500:] for _, err in outputs if err]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    ids = [i for r in reports for i in r["ids"]]
    assert None not in ids, [r["problem"] for r in reports if r["problem"]]
    assert [r["lost"] for r in reports] == [0] * 24, [r["problem"] for r in reports if r["problem"]]
    rows = statuses(fresh_url)
    assert set(ids) == set(rows) and len(rows) == 24
    assert set(rows.values()) == {"done"}


def test_threads_of_one_process_all_land(fresh_url: str) -> None:
    proc = writer(fresh_url, "--investigations", "50", "--threads", "25", "--steps", "6")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["lost"] == 0, report["problem"]
    rows = statuses(fresh_url)
    assert len(rows) == 50 and set(rows.values()) == {"done"}


def test_a_killed_writer_is_marked_interrupted_by_the_next_process(fresh_url: str, tmp_path: Path) -> None:
    victim = writer(fresh_url, "--hold", str(tmp_path / "never"))
    assert victim.stdout is not None
    stranded = json.loads(victim.stdout.readline())["ids"][0]
    assert statuses(fresh_url)[stranded] == "running"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    follower = writer(fresh_url)
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    report = json.loads(out)
    assert report["closed"] == [stranded]
    rows = statuses(fresh_url)
    assert rows[stranded] == "interrupted" and rows[report["ids"][0]] == "done"
    assert "running" not in rows.values()


def test_a_live_writer_is_not_interrupted_by_another(fresh_url: str, tmp_path: Path) -> None:
    """Negative control: the owner check tells a live process from a dead one."""
    release = tmp_path / "release"
    holder = writer(fresh_url, "--hold", str(release))
    assert holder.stdout is not None
    held = json.loads(holder.stdout.readline())["ids"][0]
    try:
        other = writer(fresh_url)
        out, _ = other.communicate(timeout=120)
        assert json.loads(out)["closed"] == []
        assert statuses(fresh_url)[held] == "running"
    finally:
        release.touch()
        holder.communicate(timeout=120)
    assert statuses(fresh_url)[held] == "done"


def test_in_a_cluster_an_owner_on_another_host_is_interrupted_only_when_its_pod_is_gone(tmp_path: Path) -> None:
    from bot.history import service
    from bot.history.db import owner_is_alive
    from bot.history.enums import Origin
    from bot.history.recorder import HistoryRecorder
    from bot.history.service import Person

    history = HistoryRecorder.from_url(f"sqlite:///{tmp_path / 'history.db'}")
    owners = {
        "kubereach-bot-7d9-gone:1:4242": False,
        "kubereach-bot-7d9-live:1:4242": True,
        "kubereach-bot-7d9-unknown:1:4242": None,
    }
    with history.sessions.begin() as session:
        ids = {
            owner: service.start_investigation(
                session, question="q", asked_by=Person("U1", "ana"), origin=Origin.SLACK, owner=owner
            )
            for owner in owners
        }
    pods = {owner.partition(":")[0]: exists for owner, exists in owners.items()}
    closed = history.close_stranded(lambda owner: owner_is_alive(owner, pods.get))
    assert [c.id for c in closed] == [ids["kubereach-bot-7d9-gone:1:4242"]]
    rows = statuses(f"sqlite:///{tmp_path / 'history.db'}")
    assert rows[ids["kubereach-bot-7d9-live:1:4242"]] == rows[ids["kubereach-bot-7d9-unknown:1:4242"]] == "running"


def test_whether_an_owner_is_alive_is_decided_while_no_transaction_is_open(fresh_url: str) -> None:
    """The liveness check may ask the Kubernetes API: it must not run inside the write transaction."""
    history = HistoryRecorder.from_url(fresh_url)
    with history.sessions.begin() as session:
        gone = service.start_investigation(
            session, question="q", asked_by=Person("U1", "ana"), origin=Origin.SLACK, owner="kubereach-bot-gone:1:1"
        )
    engine = history.sessions.kw["bind"]
    open_transactions: list[int] = [0]
    event.listen(engine, "begin", lambda conn: open_transactions.__setitem__(0, open_transactions[0] + 1))
    event.listen(engine, "commit", lambda conn: open_transactions.__setitem__(0, open_transactions[0] - 1))
    event.listen(engine, "rollback", lambda conn: open_transactions.__setitem__(0, open_transactions[0] - 1))
    seen_open: list[int] = []

    def pod_exists(owner: str) -> bool:
        seen_open.append(open_transactions[0])
        return False

    closed = history.close_stranded(pod_exists)
    assert [c.id for c in closed] == [gone]
    assert seen_open == [0]
    assert statuses(fresh_url)[gone] == "interrupted"
