"""The bot's identity on the upstream lab is the Helm chart's own: its ServiceAccount, ClusterRole and
ClusterRoleBinding as the chart renders them, created unchanged, so the real RBAC authorizer judges
exactly what an installation would grant."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from lab.upstream import objects, rbac
from tests.deploy.chart import render

SCHEMA = kubernetes_validate.utils.latest_version()


@pytest.fixture(scope="module")
def bot() -> tuple[list[dict[str, Any]], tuple[str, str]]:
    return rbac.bot_rbac(rbac.render_chart())


def test_the_lab_creates_the_chart_role_unchanged(bot: tuple[list[dict[str, Any]], tuple[str, str]]) -> None:
    created, _ = bot
    role = next(o for o in created if o["kind"] == "ClusterRole")
    as_tests_render_it = next(o for o in render() if o["kind"] == "ClusterRole")
    assert role["rules"] == as_tests_render_it["rules"]
    assert role["rules"], "an empty role would prove nothing"


def test_the_binding_names_the_service_account_the_lab_creates(bot: tuple[list[dict[str, Any]], tuple[str, str]]) -> None:
    created, (namespace, name) = bot
    assert [o["kind"] for o in created].count("ClusterRoleBinding") == 1
    binding = next(o for o in created if o["kind"] == "ClusterRoleBinding")
    role = next(o for o in created if o["kind"] == "ClusterRole")
    account = next(o for o in created if o["kind"] == "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]
    assert (account["metadata"]["namespace"], account["metadata"]["name"]) == (namespace, name) == (rbac.NAMESPACE, name)


def test_the_agents_account_and_everything_else_in_the_chart_stay_out(bot: tuple[list[dict[str, Any]], tuple[str, str]]) -> None:
    created, _ = bot
    assert sorted(o["kind"] for o in created) == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"]


def test_the_rbac_objects_are_valid_and_have_a_creation_path(bot: tuple[list[dict[str, Any]], tuple[str, str]]) -> None:
    created, _ = bot
    for obj in created:
        kubernetes_validate.validate(obj, SCHEMA, strict=True)
        assert objects.collection_path(obj).startswith(("/api/v1/namespaces/kubereach/", "/apis/rbac.authorization.k8s.io/v1/"))


def test_the_bots_token_is_asked_for_with_an_expiry() -> None:
    body = rbac.token_request(3600)
    assert body["spec"] == {"expirationSeconds": 3600}
    kubernetes_validate.validate(body, SCHEMA, strict=True)
