"""Reading manifests the way kubectl writes them, and saying clearly what is wrong when they are bad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.errors import BadInput
from bot.policy import evaluate
from bot.policy.manifests import load_cluster, load_objects
from tests.unit.policy_cases.matrix import namespace, netpol, pod

SHOP_NS = namespace("shop", team="shop")
PAYMENTS_NS = namespace("payments", team="payments", pci="true")
API = pod("shop", "api-5d7b9", "10.244.2.11", {"app": "api"}, [])
FRONTEND = pod("shop", "frontend-6c9f8", "10.244.1.10", {"app": "frontend"}, [])
LEDGER = pod("payments", "ledger-7f4c2", "10.244.1.12", {"app": "ledger"}, [("https", 8443, "TCP")])
LEDGER_INGRESS = netpol(
    "payments",
    "ledger-ingress",
    {
        "podSelector": {"matchLabels": {"app": "ledger"}},
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": "shop"}},
                        "podSelector": {"matchLabels": {"app": "api"}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 8443}],
            }
        ],
    },
)
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"namespace": "payments", "name": "ledger"},
    "spec": {"selector": {"app": "ledger"}, "ports": [{"port": 443, "targetPort": "https"}]},
}
SHOP_OBJECTS = [SHOP_NS, PAYMENTS_NS, API, FRONTEND, LEDGER, SERVICE, LEDGER_INGRESS]


def v1_list(items: list[dict[str, object]]) -> dict[str, object]:
    """What `kubectl get … -o yaml|json` prints for several objects."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def assert_shop_loaded(paths: list[Path]) -> None:
    cluster = load_cluster(paths)
    assert sorted(cluster.namespaces) == ["payments", "shop"]
    assert sorted(str(p.ref) for p in cluster.pods) == [
        "payments/ledger-7f4c2",
        "shop/api-5d7b9",
        "shop/frontend-6c9f8",
    ]
    assert [str(p.ref) for p in cluster.policies] == ["payments/ledger-ingress"]
    api, frontend, ledger = (
        cluster.pod(*name.split("/")) for name in ("shop/api-5d7b9", "shop/frontend-6c9f8", "payments/ledger-7f4c2")
    )
    assert api is not None and frontend is not None and ledger is not None
    assert evaluate(cluster, api, ledger, 8443).allowed
    assert not evaluate(cluster, frontend, ledger, 8443).allowed


def test_multi_document_yaml_with_unknown_kinds_and_empty_documents(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text("---\n" + yaml.safe_dump_all(SHOP_OBJECTS, explicit_start=True) + "---\n")
    assert_shop_loaded([path])
    kinds = [obj.kind for obj in load_objects([path])]
    assert "Service" in kinds  # read, then ignored when the cluster is built


def test_kubectl_list_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(v1_list(SHOP_OBJECTS)))
    assert_shop_loaded([path])


def test_kubectl_list_as_json(tmp_path: Path) -> None:
    path = tmp_path / "all.json"
    path.write_text(json.dumps(v1_list(SHOP_OBJECTS), indent=4))
    assert_shop_loaded([path])


def test_typed_list_items_without_kind_take_it_from_the_list(tmp_path: Path) -> None:
    items = []
    for obj in (API, FRONTEND, LEDGER):
        item = dict(obj)
        del item["kind"]
        items.append(item)
    (tmp_path / "pods.json").write_text(json.dumps({"apiVersion": "v1", "kind": "PodList", "items": items}))
    (tmp_path / "rest.yaml").write_text(yaml.safe_dump_all([SHOP_NS, PAYMENTS_NS, LEDGER_INGRESS]))
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert_shop_loaded([tmp_path])


def test_several_paths_and_later_object_replaces_earlier(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(yaml.safe_dump_all(SHOP_OBJECTS))
    relabelled = json.loads(json.dumps(FRONTEND))
    relabelled["metadata"]["labels"] = {"app": "api"}
    second = tmp_path / "b.yaml"
    second.write_text(yaml.safe_dump(relabelled))
    cluster = load_cluster([first, second])
    frontend, ledger = cluster.pod("shop", "frontend-6c9f8"), cluster.pod("payments", "ledger-7f4c2")
    assert frontend is not None and ledger is not None
    assert len(cluster.pods) == 3
    assert evaluate(cluster, frontend, ledger, 8443).allowed


def test_yaml_syntax_error_names_file_document_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(SHOP_NS) + "---\nkind: Pod\nmetadata:\n  name: [unclosed\n")
    with pytest.raises(BadInput) as caught:
        load_cluster([path])
    message = caught.value.message
    assert message.startswith(f"{path}: document 2: not valid YAML")
    assert "line" in message


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "kind": "Pod",\n  "metadata": {"name": "x",}\n}\n')
    with pytest.raises(BadInput, match=r"broken.json: document 1: not valid JSON: .* at line 3 column"):
        load_cluster([path])


def test_document_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump(SHOP_NS) + "---\n- just\n- a list\n")
    with pytest.raises(BadInput, match=r"list.yaml: document 2: expected a Kubernetes object, got list"):
        load_cluster([path])


def test_document_without_kind(tmp_path: Path) -> None:
    path = tmp_path / "nokind.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "metadata": {"name": "x"}}))
    with pytest.raises(BadInput, match=r"nokind.yaml: document 1: has no kind"):
        load_cluster([path])


def test_invalid_object_inside_a_list_names_document_item_object_and_field(tmp_path: Path) -> None:
    bad = netpol("shop", "bad-cidr", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "nope"}}]}]})
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(v1_list([SHOP_NS, bad])))
    with pytest.raises(BadInput) as caught:
        load_cluster([path])
    assert caught.value.message == (
        f"{path}: document 1, item 2: NetworkPolicy shop/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr: "
        "'nope' is not a CIDR such as 10.0.0.0/8"
    )


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file or directory"):
        load_cluster([tmp_path / "absent.yaml"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match=r"no \.yaml, \.yml or \.json files"):
        load_cluster([empty])


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: Namespace\nmetadata:\n  name: caf\xe9\n")
    with pytest.raises(BadInput, match="not UTF-8"):
        load_cluster([path])
