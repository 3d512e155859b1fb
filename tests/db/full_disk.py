"""Run inside a private mount namespace (`unshare --mount --propagation private`): a small tmpfs holds
the SQLite history; a writer process starts an investigation, the disk fills up mid-run, the writer
records its steps and verdict (which cannot be written), then a second process starts once space is
back. Prints one JSON line: the writer's exit code and report, the follower's report, the rows.

    unshare --mount --propagation private python -m tests.db.full_disk DIR
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path


def main(directory: str) -> int:
    root = Path(directory)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "kubereach-history-test", str(root)], check=True)
    try:
        url = f"sqlite:///{root / 'history.db'}"
        go = root / "go"
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.db.history_writer", url, "--hold", str(go), "--steps", "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None
        started = json.loads(writer.stdout.readline())["ids"][0]
        filler = root / "filler"
        with filler.open("wb") as out:
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        go.touch()
        rest, err = writer.communicate(timeout=300)
        filler.unlink()
        follower = subprocess.run(
            [sys.executable, "-m", "tests.db.history_writer", url], capture_output=True, text=True, timeout=300, check=False
        )
        with sqlite3.connect(root / "history.db") as db:
            rows = dict(db.execute("SELECT public_id, status FROM investigations").fetchall())
        print(
            json.dumps(
                {
                    "started": started,
                    "writer_rc": writer.returncode,
                    "writer": json.loads(rest.strip().splitlines()[-1]) if rest.strip() else None,
                    "writer_stderr": err[-2000:],
                    "follower_rc": follower.returncode,
                    "follower": json.loads(follower.stdout.strip().splitlines()[-1]) if follower.stdout.strip() else None,
                    "rows": rows,
                }
            )
        )
        return 0
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
