"""Issue 11, item 3: a failing database never fails the investigation, and never prints a traceback.

PostgreSQL unreachable: the recorder is unavailable, says why, writes nothing and raises nothing;
`serve` starts. A missing driver or a malformed URL: one line, exit 2, no password. The SQLite disk
filling up mid-investigation: no crash, and the row left `running` is closed by the next process.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.history.enums import Origin
from bot.history.recorder import Asker, HistoryRecorder
from bot.history.service import Person

REPO = Path(__file__).resolve().parents[2]
KUBEREACH = Path(sys.executable).parent / "kubereach"
UNREACHABLE = "postgresql://kubereach:s3cret-pw@127.0.0.1:9/history?connect_timeout=3"
ASKER = Asker(Person("U1", "ana"), Origin.CLI)


def test_unreachable_postgres_leaves_the_recorder_unavailable_without_raising() -> None:
    history = HistoryRecorder.from_url(UNREACHABLE)
    assert not history.available
    assert history.problem is not None and "Connection refused" in history.problem
    assert "s3cret-pw" not in history.problem
    assert history.start("why can't web reach api", ASKER, None, None, ()) is None
    assert history.close_stranded() == []
    assert history.database_answers() is False


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBEREACH_DATABASE_URL": url}
    env.pop("DATABASE_URL", None)
    return subprocess.run([str(KUBEREACH), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


BAD_URLS = [
    ("postgresql+psycopg2://kubereach:s3cret-pw@127.0.0.1/history", "no database driver for 'postgresql+psycopg2'"),
    ("mysql://kubereach:s3cret-pw@127.0.0.1/history", "no database driver for 'mysql'"),
    ("postgresql+psycopg://kubereach:s3cret-pw@127.0.0.1:notaport/history", "cannot be read"),
    ("not a url at all", "cannot be read"),
]


@pytest.mark.parametrize(("url", "said"), BAD_URLS, ids=["missing-driver", "unknown-dialect", "bad-port", "garbage"])
def test_a_missing_driver_or_malformed_url_is_one_line_without_a_traceback(url: str, said: str) -> None:
    proc = run_cli("search", "ledger", url=url)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret-pw" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if not line.startswith("  hint:")]) == 1, proc.stderr


def test_serve_starts_and_says_the_history_is_unavailable_when_postgres_is_unreachable() -> None:
    env = {
        **os.environ,
        "KUBEREACH_DATABASE_URL": UNREACHABLE,
        "KUBEREACH_SLACK_BOT_TOKEN": "xoxb-test-token",
        "KUBEREACH_SLACK_SIGNING_SECRET": "test-signing-secret",
        "KUBEREACH_SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(KUBEREACH), "serve", "--host", "127.0.0.1", "--port", "0", "--grace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while not any("listening on" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, (lines, proc.stderr and proc.stderr.read())
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                lines.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert any("history unavailable" in line and "Connection refused" in line for line in lines), lines
    assert "Traceback" not in err and "s3cret-pw" not in "".join(lines) + err


@pytest.mark.lab  # root: a tmpfs in a private mount namespace
def test_a_disk_filling_up_mid_investigation_crashes_nothing_and_the_row_is_closed_later(tmp_path: Path) -> None:
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "tests.db.full_disk", str(mount_point)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["writer_rc"] == 0, report["writer_stderr"]  # no SIGBUS, no traceback: the writer ended normally
    assert "Traceback" not in report["writer_stderr"]
    assert re.search(r"disk is full", report["writer"]["problem"] or ""), report["writer"]
    assert report["follower"]["closed"] == [report["started"]]
    assert report["rows"][report["started"]] == "interrupted"
    assert set(report["rows"].values()) == {"interrupted", "done"}
