"""Label and field selectors parse and match as the Kubernetes API does."""

from __future__ import annotations

import pytest

from lab.apiserver.errors import BadRequest
from lab.apiserver.selectors import matches_label_map, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=api", False),
        ("app!=api", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("env in (prod, staging)", True),
        ("env in (staging)", False),
        ("env notin (staging,dev)", True),
        ("env notin (prod)", False),
        ("missing notin (a)", True),
        ("tier", True),
        ("missing", False),
        ("!missing", True),
        ("!tier", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app=web, env in (prod,dev), !missing", True),
    ],
)
def test_label_selector_matches_like_kubernetes(selector: str, expected: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is expected


@pytest.mark.parametrize("bad", ["app=web,", "a b c", "env in (prod", "=web", "app=we b", "-bad=x"])
def test_malformed_label_selector_is_bad_request(bad: str) -> None:
    with pytest.raises(BadRequest):
        parse_label_selector(bad)


POD = {
    "metadata": {"name": "web-1", "namespace": "shop"},
    "spec": {"nodeName": "node-1"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=web-1", True),
        ("metadata.name==web-2", False),
        ("metadata.namespace=shop", True),
        ("spec.nodeName=node-1,status.phase=Running", True),
        ("spec.nodeName!=node-1", False),
        ("status.phase!=Failed", True),
    ],
)
def test_field_selector_matches_pod_fields(selector: str, expected: bool) -> None:
    assert parse_field_selector(selector, "Pod").matches(POD) is expected


def test_unscheduled_pod_matches_empty_node_name() -> None:
    unscheduled = {"metadata": {"name": "p", "namespace": "shop"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", "Pod").matches(unscheduled)


@pytest.mark.parametrize(("selector", "kind"), [("spec.nodeName=x", "Service"), ("status.bogus=1", "Pod"), ("x", "Pod")])
def test_unsupported_field_selector_is_bad_request(selector: str, kind: str) -> None:
    with pytest.raises(BadRequest):
        parse_field_selector(selector, kind)


def test_service_map_selector_needs_every_pair_and_empty_selects_nothing() -> None:
    assert matches_label_map({"app": "web", "tier": "front"}, LABELS)
    assert not matches_label_map({"app": "web", "tier": "back"}, LABELS)
    assert not matches_label_map({}, LABELS)
    assert not matches_label_map(None, LABELS)
