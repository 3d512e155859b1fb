"""The Slack app end to end on a real lab: signed deliveries in through the local Slack, threaded verdicts out.

One lab for the module (the machine is small). Every delivery's ack time is collected and printed
at the end (median and max); speed itself is measured in bench/, not asserted here.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.history.models import AuditEntry, Investigation, Resolution
from bot.settings import load_settings
from bot.slack.ids import ActionId, BlockId
from lab.demo import LocalSlack, final_verdict
from lab.slackstub import Message
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

QUESTION = "why can't frontend reach api"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("sl")) as lab:
        yield lab


@pytest.fixture(scope="module")
def slack(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlack]:
    db = tmp_path_factory.mktemp(f"{lab.prefix}-slack") / "history.db"
    rig = LocalSlack.start(Path(lab.status["config"]), f"sqlite:///{db}", channel_namespaces={"CSHOP": ["shop"], "*": ["*"]})
    rig.stub.state.add_channel("shop-only", channel_id="CSHOP")
    try:
        yield rig
    finally:
        rig.close()
        acks = sorted(rig.acks)
        if acks:
            print(
                f"\nack times over {len(acks)} deliveries: median {statistics.median(acks) * 1000:.1f} ms, "
                f"max {acks[-1] * 1000:.1f} ms"
            )


def _newest_thread(slack: LocalSlack, channel: str | None = None) -> list[Message]:
    return _without_pictures(slack, slack.threads(channel)[-1])


def _without_pictures(slack: LocalSlack, thread: list[Message]) -> list[Message]:
    """The thread without the path picture's message (posted just after each verdict, so it may or may
    not be there yet when a test reads the thread)."""
    return [m for m in thread if not (m.files and all(_is_picture(slack, i) for i in m.files))]


def _investigations(slack: LocalSlack) -> list[Investigation]:
    assert slack.deps.history is not None
    with slack.deps.history.sessions() as session:
        return list(session.scalars(select(Investigation).order_by(Investigation.id)))


@pytest.mark.parametrize(
    ("fault", "question", "expected"),
    [
        ((), QUESTION, "NO_FAULT_FOUND"),
        ((), "why can't frontend reach ledger", "NETWORK_POLICY_DENIES_INGRESS"),
        (("ip-forward-off", "--node", "node-2"), QUESTION, "IP_FORWARDING_DISABLED"),
        (("selector-mismatch",), QUESTION, "SERVICE_NO_ENDPOINTS"),
        (("dns-down",), QUESTION, "DNS_RESOLUTION_FAILED"),
    ],
    ids=["healthy", "policy-deny", "ip-forward-off", "selector-mismatch", "dns-down"],
)
def test_slash_command_ends_in_a_thread_whose_final_message_has_the_verdict(
    lab: Lab, slack: LocalSlack, fault: tuple[str, ...], question: str, expected: str
) -> None:
    if fault:
        lab.cli("fault", *fault)
    try:
        delivery = slack.command(question)
        assert (delivery.status, delivery.body) == (200, "")
        thread = _newest_thread(slack)
        assert question in thread[0].text
        assert final_verdict(thread) == expected
        progress = thread[1]
        assert progress.edits, "the investigating message was updated in place"
        assert any(a["action_id"] == "kubereach_rerun" for b in progress.blocks if b["type"] == "actions" for a in b["elements"])
    finally:
        if fault:
            lab.cli("heal")


def _blocks(message: Message, block_id: BlockId) -> list[dict[str, Any]]:
    return [b for b in message.blocks if b.get("block_id") == block_id.value]


def test_the_verdict_is_compact_and_the_full_checklist_is_behind_show_evidence(slack: LocalSlack) -> None:
    slack.command("why can't frontend reach ledger")
    verdict = _newest_thread(slack)[-1]
    assert final_verdict([verdict]) == "NETWORK_POLICY_DENIES_INGRESS"
    order = [b.get("block_id") for b in verdict.blocks]
    assert (
        order.index(BlockId.WHERE) < order.index(BlockId.WHY) < order.index(BlockId.REMEDIATION) < order.index(BlockId.CHECKLIST)
    )
    [checklist] = _blocks(verdict, BlockId.CHECKLIST)
    lines = checklist["text"]["text"].splitlines()
    assert lines[-1].endswith("checks passed · Show evidence")
    assert all(line.startswith((":x:", ":warning:")) for line in lines[:-1]) and lines[:-1]
    slack.click("Show evidence", message=verdict)
    thread = _newest_thread(slack)
    files = {f.id: f for f in slack.stub.state.files()}
    shown = json.dumps([m.blocks for m in thread]) + "".join(
        (files[file_id].content or b"").decode()
        for m in thread
        for file_id in m.files
        if file_id in files and not files[file_id].name.endswith("-path.png")  # the path picture is no evidence
    )
    assert "[pass]" in shown, "the passing steps are in the evidence"


def test_an_ambiguous_name_offers_its_candidates_as_buttons_and_pressing_one_answers(lab: Lab, slack: LocalSlack) -> None:
    from kubernetes import client as kube
    from kubernetes import config as kube_config

    settings = load_settings(Path(lab.status["config"]))
    assert settings.kubeconfig is not None
    core = kube.CoreV1Api(kube_config.new_client_from_config(str(settings.kubeconfig)))
    services = {
        "shop": {"selector": {"app": "redis"}, "ports": [{"name": "redis", "port": 6379, "targetPort": 6379}]},
        "monitoring": {"selector": {"app": "prometheus"}, "ports": [{"name": "web", "port": 9090, "targetPort": "web"}]},
    }
    created: list[str] = []
    try:
        for namespace, spec in services.items():
            core.create_namespaced_service(
                namespace, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cache"}, "spec": spec}
            )
            created.append(namespace)
        address = core.read_namespaced_service("cache", "shop").spec.cluster_ip
        frontend = lab.pod(app="frontend")
        eventually(lambda: lab.tcp(frontend, address, 6379), lambda r: bool(r["ok"]), 60, "kube-proxy serving svc/cache in shop")
        eventually(
            lambda: lab.dns(frontend, "cache.shop.svc.cluster.local"), lambda r: bool(r["ok"]), 60, "DNS for svc/cache in shop"
        )

        slack.command("why can't frontend reach cache")
        thread = _newest_thread(slack)
        asked_back = thread[-1]
        assert final_verdict(thread) == "AMBIGUOUS_NAME"
        [choices] = _blocks(asked_back, BlockId.CHOICES)
        buttons = {e["text"]["text"]: e for e in choices["elements"]}
        assert set(buttons) == {"svc/cache in monitoring", "svc/cache in shop"}
        assert all(e["action_id"].startswith(ActionId.ASK_INSTEAD.value) for e in buttons.values())

        slack.click("svc/cache in shop")
        thread = _without_pictures(slack, slack.stub.thread(slack.channel, thread[0].ts))
        answer = thread[-1]
        assert answer.ts != asked_back.ts and final_verdict([answer]) == "NO_FAULT_FOUND"
        [where] = _blocks(answer, BlockId.WHERE)
        assert "svc/cache in shop" in where["elements"][0]["text"]
    finally:
        for namespace in created:
            core.delete_namespaced_service("cache", namespace)


def test_mention_is_answered_in_its_own_thread(slack: LocalSlack) -> None:
    root = slack.stub.post_user_message(slack.channel, slack.user, "api is flaky for shop users")
    delivery = slack.mention("why can't frontend reach ledger", thread_ts=root)
    assert delivery.status == 200
    thread = slack.stub.thread(slack.channel, root)
    assert final_verdict(thread) == "NETWORK_POLICY_DENIES_INGRESS"


def test_rerun_after_heal_says_what_changed(lab: Lab, slack: LocalSlack) -> None:
    lab.cli("fault", "ip-forward-off", "--node", "node-2")
    try:
        slack.command(QUESTION)
        assert final_verdict(_newest_thread(slack)) == "IP_FORWARDING_DISABLED"
    finally:
        lab.cli("heal")
    slack.click("Re-run")
    thread = _newest_thread(slack)
    rerun = thread[-1]
    assert final_verdict(thread) == "NO_FAULT_FOUND"
    said = json.dumps(rerun.blocks)
    assert "Since the last run" in said
    assert "IP_FORWARDING_DISABLED \\u2192 NO_FAULT_FOUND" in said or "IP_FORWARDING_DISABLED → NO_FAULT_FOUND" in said


def test_show_evidence_and_resolved_post_in_the_thread_and_record_the_resolver(slack: LocalSlack) -> None:
    slack.command(QUESTION)
    verdict_message = _newest_thread(slack)[-1]
    slack.click("Show evidence", message=verdict_message)
    slack.click("Resolved", message=verdict_message)
    modal = slack.stub.state.opened_views()[-1]
    assert modal.view["callback_id"] == "kubereach_resolve"
    slack.submit_modal("restarted the api pods")
    thread = _newest_thread(slack)
    evidence_files = [i for m in thread for i in m.files if not _is_picture(slack, i)]
    assert evidence_files or any("Evidence of" in m.text for m in thread)
    assert "Resolved by" in thread[-1].text and "restarted the api pods" in json.dumps(thread[-1].blocks)
    assert slack.deps.history is not None
    with slack.deps.history.sessions() as session:
        resolutions = list(session.scalars(select(Resolution)))
    assert any(r.resolved_by_id == slack.user and r.note == "restarted the api pods" for r in resolutions)


def test_retried_deliveries_start_one_investigation(slack: LocalSlack) -> None:
    before = len(_investigations(slack))
    mention = slack.mention(QUESTION)
    slack.retry(mention, retry_num=1)
    slack.retry(mention, retry_num=2)
    command = slack.command(QUESTION)
    slack.retry(command, retry_num=1)
    assert len(_investigations(slack)) == before + 2


def test_a_channel_limited_to_shop_gets_a_private_refusal_about_payments(slack: LocalSlack) -> None:
    public_before = len(slack.stub.messages("CSHOP"))
    slack.command("why can't frontend reach ledger", channel="CSHOP")
    refusals = slack.ephemerals("CSHOP")
    assert refusals and "`shop`" in refusals[-1].text and "payments" in refusals[-1].text
    assert len(slack.stub.messages("CSHOP")) == public_before
    assert slack.deps.history is not None
    with slack.deps.history.sessions() as session:
        denied = list(session.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False), AuditEntry.channel == "CSHOP")))
    assert denied


def test_a_rate_limited_post_is_retried_and_the_message_arrives(slack: LocalSlack) -> None:
    earlier = len(slack.stub.calls("chat.postMessage"))
    slack.stub.rate_limit("chat.postMessage", times=1, retry_after=1)
    slack.command(QUESTION)
    assert final_verdict(_newest_thread(slack)) == "NO_FAULT_FOUND"
    statuses = [c.http_status for c in slack.stub.calls("chat.postMessage")[earlier:]]
    assert 429 in statuses and statuses[-1] == 200


def test_slack_down_does_not_lose_the_investigation(slack: LocalSlack) -> None:
    slack.command("help")  # the app has talked to Slack before the outage
    before = len(_investigations(slack))
    slack.stub.down()
    try:
        delivery = slack.sender.slash_command("/reach", QUESTION, channel=slack.channel, user=slack.user)
        assert delivery.status == 200
        assert slack.deps.in_flight.wait_idle(120)
    finally:
        slack.stub.up()
    found = _investigations(slack)[before:]
    assert [str(i.status) for i in found] == ["done"]
    assert found[0].verdict_code is not None


def test_no_secret_or_token_appears_in_any_message(slack: LocalSlack) -> None:
    # This test makes its own traffic (a verdict, its evidence, a private refusal) rather than relying
    # on what the tests before it left in the stand-in.
    slack.command(QUESTION)
    thread = _newest_thread(slack)
    assert final_verdict(thread) == "NO_FAULT_FOUND"
    slack.click("Show evidence", message=thread[-1])
    slack.command("why can't frontend reach ledger", channel="CSHOP")
    assert slack.ephemerals("CSHOP"), "the refusal is a private message"
    secrets = [slack.stub.state.bot_token, slack.signing_secret]
    everything = [
        json.dumps({"text": m.text, "blocks": m.blocks})
        for m in slack.stub.state.messages(include_ephemeral=True, include_deleted=True)
    ]
    everything += [json.dumps(p.body) for p in slack.stub.state.response_posts()]
    everything += [(f.content or b"").decode(errors="replace") for f in slack.stub.state.files()]
    assert any(QUESTION in text for text in everything) and any("payments" in text for text in everything)
    assert not [text for text in everything for secret in secrets if secret in text]


def _is_picture(slack: Any, file_id: str) -> bool:
    """Whether a shared file is the path picture (posted with every verdict), not evidence."""
    stored = slack.stub.state.file(file_id)
    return stored is not None and stored.name.endswith("-path.png")


def test_a_fabric_firewall_is_named_from_the_trace_and_trace_the_packet_follows_the_healed_path(
    lab: Lab, slack: LocalSlack
) -> None:
    lab.refresh()
    source = next(p["name"] for p in lab.pods(app="frontend") if p["node"] == "node-3")
    lab.cli("fault", "underlay-drop", "--from", "node-3", "--to", "node-2")
    try:
        slack.command(f"why can't pod {source} reach redis")
        thread = _newest_thread(slack)
        assert final_verdict(thread) == "UNDERLAY_DROPS"
        path = [b for b in thread[-1].blocks if b.get("block_id") == BlockId.TRACE.value]
        assert path and "⛔ node-2 eth0 ✗" in path[0]["text"]["text"]
    finally:
        lab.cli("heal")
    slack.click("Trace the packet")
    thread = _newest_thread(slack)
    assert final_verdict(thread) == "NO_FAULT_FOUND"
    [path] = [b for b in thread[-1].blocks if b.get("block_id") == BlockId.TRACE.value]
    assert "✗" not in path["text"]["text"] and "⛔" not in path["text"]["text"]
    newest = _investigations(slack)[-1]
    assert slack.deps.history is not None
    with slack.deps.history.sessions() as session:
        kinds = [e.get("kind") for step in session.get(Investigation, newest.id).steps for e in step.evidence]  # type: ignore[union-attr]
    assert "trace" in kinds
