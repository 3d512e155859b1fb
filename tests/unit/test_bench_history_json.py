"""`bench/bench_history.py --json` run as a process at a tiny scale: the table, then the figures as its last line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
SHAPES = {
    "name (text)",
    "name (filter)",
    "verdict (filter)",
    "free text (evidence word)",
    "free text (2 words)",
    "text + namespace + 30d",
    "text + verdict + node",
    "free text (rare: one KUBE-SVC chain)",
}


@pytest.mark.postgres
def test_bench_history_prints_every_shape_per_backend_as_json_last() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "bench/bench_history.py",
            "--sqlite-rows",
            "200",
            "--pg-rows",
            "200",
            "--queries",
            "3",
            "--record-repeat",
            "2",
            "--pg-url",
            POSTGRES_URL,
            "--json",
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["backend", "rows", "shape"], "the human table comes first"
    figures = json.loads(lines[-1])
    assert set(figures) == {"postgresql", "sqlite", "record_ms"}
    for backend in ("postgresql", "sqlite"):
        assert set(figures[backend]) >= SHAPES, backend
        assert set(figures["record_ms"][backend]) == {"p50_ms", "p99_ms"}
        for shape, figure in figures[backend].items():
            assert set(figure) == {"p50_ms", "p99_ms"}, shape
            assert 0 < figure["p50_ms"] <= figure["p99_ms"], shape
