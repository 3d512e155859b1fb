"""Test-side helpers for lab tests: bring a lab up under a unique prefix, probe from pods, wait for conditions.

Tests drive the lab through its command line (`kubereach lab …`) as a person would, and check its
effects with plain probes run inside the lab's namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.polling import eventually

__all__ = ["Lab", "eventually", "kubereach", "running_lab", "unique_prefix"]

REPO = Path(__file__).resolve().parents[2]
KUBEREACH = [sys.executable, "-m", "bot.cli"]


def kubereach(
    *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the kubereach CLI as a subprocess."""
    proc = subprocess.run([*KUBEREACH, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubereach {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc


@dataclass
class Lab:
    """A running lab instance under test."""

    prefix: str
    status: dict[str, Any]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubereach lab --prefix P ARGS…`."""
        return kubereach("lab", "--prefix", self.prefix, *args, check=check)

    def refresh(self) -> dict[str, Any]:
        """Re-read `lab status --json`."""
        self.status = json.loads(self.cli("status", "--json").stdout)
        return self.status

    def pods(self, **labels: str) -> list[dict[str, Any]]:
        """Pods whose labels include all of `labels` (current status)."""
        return [p for p in self.status["pods"] if all(p["labels"].get(k) == v for k, v in labels.items())]

    def pod(self, **labels: str) -> dict[str, Any]:
        """The first pod with these labels."""
        return self.pods(**labels)[0]

    def service(self, namespace: str, name: str) -> dict[str, Any]:
        """A service from the status."""
        return next(s for s in self.status["services"] if s["namespace"] == namespace and s["name"] == name)

    def probe(self, netns: str, probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run probes inside `netns` (concurrently); return their results in order."""
        proc = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.lab.netprobe", json.dumps(probes)],
            capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
        )  # fmt: skip
        results: list[dict[str, Any]] = json.loads(proc.stdout)
        return results

    def tcp(self, src: dict[str, Any], host: str, port: int, timeout: float = 1.5) -> dict[str, Any]:
        """One TCP connect from pod `src`."""
        return self.probe(src["netns"], [{"kind": "tcp", "host": host, "port": port, "timeout": timeout}])[0]

    def dns(self, src: dict[str, Any], name: str, server: str = "10.96.0.10", **extra: Any) -> dict[str, Any]:
        """One UDP DNS query from pod `src`."""
        return self.probe(src["netns"], [{"kind": "dns", "server": server, "name": name, **extra}])[0]

    def node(self, name: str) -> dict[str, Any]:
        """A node from the status."""
        return next(n for n in self.status["nodes"] if n["name"] == name)


def unique_prefix(tag: str) -> str:
    """A short lab prefix unique to this test process."""
    return f"t{tag}{os.getpid() % 1000:03d}"[:6]


@contextlib.contextmanager
def running_lab(prefix: str, *args: str) -> Iterator[Lab]:
    """`kubereach lab up` for the duration of the block; `lab down` in finally, whatever happened."""
    # KUBEREACH_LAB_KUBERNETES (set for the `kubernetes` tests) would turn every lab upstream: only an
    # explicit --kubernetes does that here.
    env = {k: v for k, v in os.environ.items() if k != "KUBEREACH_LAB_KUBERNETES"}
    try:
        kubereach("lab", "--prefix", prefix, "up", *args, env=env)
        lab = Lab(prefix, {})
        lab.refresh()
        yield lab
    finally:
        kubereach("lab", "--prefix", prefix, "down", check=False)
