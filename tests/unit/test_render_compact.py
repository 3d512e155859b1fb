"""Compact replies: the deciding evidence is chosen from the steps, and the terminal view reads like Slack's."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from rich.console import Console

from bot.playbook.models import Evidence, Hop, InvestigationResult, NameChoice, StepResult, StepStatus, Verdict, VerdictCode
from bot.render.summary import compact_view, deciding_evidence, passed_line
from bot.render.terminal import investigation_view

DENY = "NetworkPolicy denies pod shop/web-1 → pod payments/ledger-0 on TCP/8443 at ingress"


def _result(verdict: Verdict, steps: tuple[StepResult, ...]) -> InvestigationResult:
    return InvestigationResult(
        id="inv_compact",
        question="web in shop -> ledger in payments",
        source="deploy/web in shop",
        target="svc/ledger in payments",
        verdict=verdict,
        steps=steps,
        findings=(),
        duration_ms=5.0,
        started_at=datetime.now(UTC),
    )


PASSING = tuple(StepResult(f"passing check {i}", StepStatus.PASS, "fine") for i in range(19))
POLICY = StepResult(
    "source web-1: policy", StepStatus.FAIL, "NetworkPolicy denies ingress", (Evidence("network-policy", DENY, "node-1"),)
)
PROBES = StepResult(
    "source web-1: probes",
    StepStatus.FAIL,
    "web-1 cannot reach 2 of 2 endpoints",
    (Evidence("probe", "shop/web-1 → 10.96.0.7:443/TCP: timed_out", "node-1"),),
)
DENIED = _result(
    Verdict(VerdictCode.NETWORK_POLICY_DENIES_INGRESS, DENY, None, Hop.POLICY, ("kubectl -n payments describe networkpolicy x",)),
    (*PASSING, POLICY, PROBES),
)


def test_why_skips_what_the_summary_already_says_and_keeps_the_probe() -> None:
    assert deciding_evidence(DENIED) == ("shop/web-1 → 10.96.0.7:443/TCP: timed_out (on node-1)",)


def test_no_fault_found_is_explained_by_the_probe_step_that_succeeded() -> None:
    probed = StepResult("source web-1: probes", StepStatus.PASS, "web-1 reaches the VIP and all 2 endpoints", PROBES.evidence)
    healthy = _result(Verdict(VerdictCode.NO_FAULT_FOUND, "reaches now"), (*PASSING, probed))
    assert deciding_evidence(healthy) == ("source web-1: probes: web-1 reaches the VIP and all 2 endpoints",)
    view = compact_view(healthy)
    assert (view.listed, view.passed, view.skipped) == ((), 20, 0)


def test_a_verdict_reached_before_any_step_has_no_why() -> None:
    assert deciding_evidence(_result(Verdict(VerdictCode.SOURCE_NOT_FOUND, "no pod named x"), ())) == ()


def test_passed_line_counts_and_says_where_the_rest_is() -> None:
    assert passed_line(1, 0) == "1 check passed · Show evidence"
    assert passed_line(19, 2, where="--steps lists every step") == "19 checks passed, 2 skipped · --steps lists every step"


def _text(result: InvestigationResult, **options: bool) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(investigation_view(result, **options))
    return console.export_text()


def test_terminal_view_leads_with_verdict_why_fix_and_lists_only_failing_steps() -> None:
    text = _text(DENIED)
    assert text.index("NETWORK_POLICY_DENIES_INGRESS") < text.index("why:") < text.index("fix:") < text.index("19 checks passed")
    assert "source web-1: policy" in text and "passing check" not in text
    every = _text(DENIED, all_steps=True)
    assert all(f"passing check {i}" in every for i in range(19)) and "checks passed" not in every


def test_terminal_view_offers_the_precise_questions_for_an_ambiguous_name() -> None:
    choice = NameChoice("svc/cache in shop", "web → shop/svc/cache")
    ambiguous = dataclasses.replace(
        _result(Verdict(VerdictCode.AMBIGUOUS_NAME, "'cache' matches several objects", None, Hop.API, (choice.question,)), ()),
        choices=(choice,),
    )
    text = _text(ambiguous)
    assert "ask one of these instead:" in text and "web → shop/svc/cache" in text
