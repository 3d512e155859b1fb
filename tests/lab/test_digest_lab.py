"""Digests on the lab: the real Investigator, agents and API; a full conntrack table and a service
without endpoints show up, a second bot replica does not post the same slot, and after healing the
next digest reports both as gone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session, sessionmaker

from bot.digest import service as store
from bot.digest.flows import DigestDeps, SlotOutcome, run_slot
from bot.digest.models import Digest, SectionName
from bot.digest_cli import digest as digest_command
from bot.history.db import create_history_engine, session_factory, upgrade
from bot.history.enums import DigestCadence
from bot.history.service import Person
from bot.investigation import investigator_sweep
from bot.settings import load_settings
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

FULL_NODE = "node-2"
SERVICE = "shop/api"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("d"), "--nodes", "2", "--cni", "flannel-vxlan", "--proxy", "iptables") as running:
        yield running


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    engine = create_history_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    yield url


def _sessions(url: str) -> sessionmaker[Session]:
    return session_factory(create_history_engine(url))


def _conntrack(digest: Digest) -> list[dict[str, Any]]:
    return [dict(item.data) for item in digest.section(SectionName.CONNTRACK).items]


def _endpoint_problems(lab: Lab) -> bool:
    """Whether the API's EndpointSlices for shop/api have no ready endpoint yet (the controller is asynchronous)."""
    from bot.cluster.client import ENDPOINT_SLICES, ClusterClient
    from bot.cluster.models import endpoints_of_slice

    settings = load_settings(Path(lab.status["config"]))
    assert settings.kubeconfig is not None
    with ClusterClient.from_kubeconfig(settings.kubeconfig) as client:
        slices = client.list_objects(ENDPOINT_SLICES, "shop", label_selector="kubernetes.io/service-name=api")
    return not any(e.ready for s in slices for e in endpoints_of_slice(s))


def test_digest_shows_full_conntrack_and_missing_endpoints_then_reports_them_gone(lab: Lab, database: str) -> None:
    config = Path(lab.status["config"])
    settings = load_settings(config)
    sweep = investigator_sweep(settings)
    replicas = [
        DigestDeps(_sessions(database), sweep, owner="bot-a:1:1"),
        DigestDeps(_sessions(database), sweep, owner="bot-b:2:2"),
    ]
    with replicas[0].sessions.begin() as session:
        subscription_id = store.replace_subscription(
            session, channel="C0HEALTH", cadence=DigestCadence.DAILY, time_of_day="09:00", timezone="UTC",
            weekday=None, namespaces=(), created_by=Person("U1", "ana"), at=datetime.now(UTC) - timedelta(days=3),
        )  # fmt: skip
    posts: list[tuple[str, Digest]] = []
    lock = threading.Lock()

    def post(channel: str, digest: Digest) -> None:
        with lock:
            posts.append((channel, digest))

    lab.cli("fault", "conntrack-full", "--node", FULL_NODE)
    lab.cli("fault", "selector-mismatch", "--service", SERVICE)
    try:
        eventually(lambda: _endpoint_problems(lab), bool, what="shop/api without ready endpoints in the API")

        # Slot 1, fired by two replicas at once: one sweeps and posts, the other finds it taken.
        slot_1 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        outcomes: list[SlotOutcome] = []
        barrier = threading.Barrier(2)

        def fire(deps: DigestDeps) -> None:
            barrier.wait()
            outcome = run_slot(deps, subscription_id, slot_1, post)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=fire, args=(deps,)) for deps in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(outcomes) == [SlotOutcome.POSTED, SlotOutcome.TAKEN]
        assert len(posts) == 1
        channel, first = posts[0]
        assert channel == "C0HEALTH"
        assert first.section(SectionName.AGENTS).summary == "2 of 2 agents answered"
        conntrack = _conntrack(first)
        assert conntrack[0]["node"] == FULL_NODE
        assert conntrack[0]["at_limit"] and conntrack[0]["count"] >= conntrack[0]["max"] > 0
        full = first.section(SectionName.CONNTRACK).items[0]
        assert full.problem and full.change is not None and full.change.value == "new"
        endpoints = {i.key: i for i in first.section(SectionName.ENDPOINTS).problems}
        assert f"endpoints:{SERVICE}" in endpoints
        assert "matches no ready pod" in endpoints[f"endpoints:{SERVICE}"].text
    finally:
        lab.cli("heal")

    eventually(lambda: _endpoint_problems(lab), lambda missing: not missing, what="shop/api ready again")
    slot_2 = slot_1 + timedelta(seconds=30)
    assert run_slot(replicas[1], subscription_id, slot_2, post) == SlotOutcome.POSTED
    _, second = posts[-1]
    gone_conntrack = {g.key for g in second.section(SectionName.CONNTRACK).gone}
    gone_endpoints = {g.key for g in second.section(SectionName.ENDPOINTS).gone}
    assert f"conntrack:{FULL_NODE}" in gone_conntrack
    assert f"endpoints:{SERVICE}" in gone_endpoints
    assert not any(i.problem for i in second.section(SectionName.CONNTRACK).items)

    # The terminal's digest of the same lab, as JSON (the `kubereach --config PATH digest --json` command).
    result = CliRunner().invoke(digest_command, ["--json", "--db", database], obj={"config_path": config})
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["cluster"] == settings.cluster
    names = [s["name"] for s in printed["sections"]]
    assert names[:2] == ["agents", "conntrack"] and "endpoints" in names
    for deps in replicas:
        bind = deps.sessions.kw.get("bind")
        assert bind is not None
        bind.dispose()
