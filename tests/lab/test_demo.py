"""`kubereach demo --script` with the guided tour: exits 0, prints the three threads with their verdicts,
and saves each verdict's path picture, saying where."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.lab.labkit import KUBEREACH, REPO, kubereach, unique_prefix

pytestmark = pytest.mark.lab


def test_demo_script_runs_the_tour_and_prints_three_threads() -> None:
    prefix = unique_prefix("dm")
    try:
        proc = subprocess.run(
            [*KUBEREACH, "demo", "--prefix", prefix, "--script", str(REPO / "lab" / "demo_tour.txt")],
            capture_output=True, text=True, cwd=REPO, timeout=600, check=False,
        )  # fmt: skip
        pictures = re.findall(r"path picture saved: (\S+\.png)", proc.stdout)
        assert len(pictures) >= 3, proc.stdout
        assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    finally:
        kubereach("lab", "--prefix", prefix, "down", check=False)
        shutil.rmtree(Path(tempfile.gettempdir()) / f"kubereach-demo-{prefix}", ignore_errors=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    threads = [json.loads(line.removeprefix("THREAD ")) for line in proc.stdout.splitlines() if line.startswith("THREAD ")]
    assert [t["verdicts"] for t in threads] == [
        ["NO_FAULT_FOUND"],
        ["NETWORK_POLICY_DENIES_INGRESS"],
        ["IP_FORWARDING_DISABLED", "NO_FAULT_FOUND"],
    ]
    assert "Since the last run" in proc.stdout
