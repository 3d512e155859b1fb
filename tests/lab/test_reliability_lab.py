"""Issue 11 on the lab: a busy agent is never evidence, the history keeps every investigation under
concurrency and outlives its database, a killed `ask` is cleaned up by the next one.

One lab for the module (3 nodes, the default shop).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.fleet.client import Fleet
from bot.settings import load_settings
from kubereach.agent.v1 import agent_pb2 as pb
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

FAULTS = {
    "DNS_RESOLUTION_FAILED",
    "NETWORK_POLICY_DENIES_EGRESS",
    "NETWORK_POLICY_DENIES_INGRESS",
    "KUBE_PROXY_RULES_MISSING",
    "KUBE_PROXY_RULES_STALE",
    "CONNTRACK_TABLE_FULL",
    "CONNTRACK_STALE_ENTRY",
    "POD_INTERFACE_DOWN",
    "VETH_NOT_ON_BRIDGE",
    "POD_ROUTE_MISSING",
    "NODE_ROUTE_MISSING",
    "IP_FORWARDING_DISABLED",
    "FORWARD_CHAIN_DROPS",
    "RP_FILTER_DROPS",
    "MTU_MISMATCH",
    "OVERLAY_DEVICE_DOWN",
    "DESTINATION_NOT_LISTENING",
    "SERVICE_NO_ENDPOINTS",
    "SERVICE_ENDPOINTS_NOT_READY",
    "SERVICE_PORT_MISMATCH",
}
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("r")) as opened:
        yield opened


def ask_process(lab: Lab, question: str, db_url: str | None, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    if db_url is not None:
        env["KUBEREACH_DATABASE_URL"] = db_url
    return subprocess.Popen(
        [str(BIN / "kubereach"), "--config", lab.status["config"], "ask", question, "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class ProbeFlood:
    """Keeps one agent's probe pool full: slow TCP probes (frontend → ledger, dropped by policy)."""

    def __init__(self, lab: Lab, node: str, source_ip: str, target_ip: str, in_flight: int) -> None:
        self.settings = load_settings(Path(lab.status["config"]))
        self.node, self.source_ip, self.target_ip, self.in_flight = node, source_ip, target_ip, in_flight
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.refused = 0
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),), daemon=True)

    async def one(self, fleet: Fleet) -> None:
        request = pb.ProbeTcpRequest(pod_ip=self.source_ip, target_ip=self.target_ip, port=8443, timeout_ms=10_000)
        while not self.stop.is_set():
            outcome = await fleet.call(self.node, "ProbeTcp", request, timeout_s=120)
            if not outcome.ok and outcome.error_kind == "busy":
                self.refused += 1
                await asyncio.sleep(0.2)

    async def run(self) -> None:
        self.stop = asyncio.Event()
        agents = self.settings.agents.model_copy(update={"concurrency": self.in_flight * 2})
        fleet = Fleet(agents.nodes, agents)
        tasks = [asyncio.ensure_future(self.one(fleet)) for _ in range(self.in_flight)]
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await fleet.close()

    def __enter__(self) -> ProbeFlood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def test_a_saturated_agent_gives_no_fault_verdict_on_the_healthy_lab(lab: Lab) -> None:
    """The review's case: node-1's agent full of slow probes (and refusing more), "why can't frontend
    reach api" answered DNS_RESOLUTION_FAILED. Now: whatever could not be checked is named, no fault."""
    frontend = next(p for p in lab.status["pods"] if p["labels"].get("app") == "frontend" and p["node"] == "node-1")
    ledger = next(p for p in lab.status["pods"] if p["labels"].get("app") == "ledger")
    with ProbeFlood(lab, "node-1", frontend["ip"], ledger["ip"], in_flight=80) as flood:
        eventually(lambda: flood.refused, lambda n: n > 0, 60, "node-1's agent refusing probes as busy")
        proc = ask_process(lab, "why can't frontend reach api", None, "--no-history")
        out, err = proc.communicate(timeout=180)
        # Quick reads still answer while the probes are refused.
        fleet_settings = load_settings(Path(lab.status["config"]))

        async def stats() -> Any:
            fleet = Fleet(fleet_settings.agents.nodes, fleet_settings.agents)
            try:
                return await fleet.call("node-1", "GetConntrackStats", pb.GetConntrackStatsRequest(), timeout_s=10)
            finally:
                await fleet.close()

        quick = asyncio.run(stats())
    assert proc.returncode == 0, err
    verdict = json.loads(out)["verdict"]
    assert verdict["code"] not in FAULTS, verdict
    assert verdict["code"] in ("AGENT_UNREACHABLE", "NO_FAULT_FOUND"), verdict
    if verdict["code"] == "AGENT_UNREACHABLE":
        assert "node-1" in verdict["summary"], verdict
    assert quick.ok, quick.error


def history_rows(path: Path) -> dict[str, str]:
    """public id → status; empty while the schema is not there yet (the first writer is migrating)."""
    try:
        with sqlite3.connect(path, timeout=10) as db:
            return dict(db.execute("SELECT public_id, status FROM investigations").fetchall())
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise


def test_concurrent_asks_all_land_in_the_sqlite_history(lab: Lab, tmp_path: Path) -> None:
    """20 `kubereach ask` processes at once on the default SQLite history: 20 rows, all done."""
    db = tmp_path / "history.db"
    url = f"sqlite:///{db}"
    subprocess.run(
        [str(BIN / "kubereach"), "--config", lab.status["config"], "search", "x", "--json"],
        check=False,
        capture_output=True,
        env={**os.environ, "KUBEREACH_DATABASE_URL": url},
        timeout=60,
    )  # migrate once, as a deployed history would already be
    procs = [ask_process(lab, "why can't frontend reach api", url) for _ in range(20)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 20, [e[-300:] for _, e in results if e]
    ids = {json.loads(out)["id"] for out, _ in results}
    rows = history_rows(db)
    assert ids <= set(rows), f"not recorded: {sorted(ids - set(rows))}"
    assert sorted(set(rows.values())) == ["done"], rows


def test_a_killed_ask_is_marked_interrupted_by_the_next_ask(lab: Lab, tmp_path: Path) -> None:
    db = tmp_path / "history.db"
    url = f"sqlite:///{db}"
    state = json.loads((Path("/run/kubereach") / lab.prefix / "state.json").read_text())
    agents = [pid for name, pid in state["processes"].items() if name.startswith("agent/")]
    for pid in agents:  # the agents hang, so the victim is surely still running when it is killed
        os.kill(pid, signal.SIGSTOP)
    try:
        victim = ask_process(lab, "why can't frontend reach ledger", url)
        running = eventually(
            lambda: history_rows(db) if db.exists() else {}, lambda r: "running" in r.values(), 60, "a running row"
        )
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
    finally:
        for pid in agents:
            os.kill(pid, signal.SIGCONT)
    stranded = next(i for i, s in running.items() if s == "running")
    follower = ask_process(lab, "why can't frontend reach api", url)
    out, err = follower.communicate(timeout=180)
    assert follower.returncode == 0, err
    rows = history_rows(db)
    assert rows[stranded] == "interrupted"
    assert rows[json.loads(out)["id"]] == "done"


def test_an_unreachable_postgres_never_fails_the_investigation(lab: Lab) -> None:
    proc = ask_process(lab, "why can't frontend reach api", "postgresql://kubereach@127.0.0.1:9/none?connect_timeout=2")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert json.loads(out)["verdict"]["code"] == "NO_FAULT_FOUND"
    assert "history unavailable:" in err and "Traceback" not in err
