"""bot.cluster.rest: the bot's GETs sent through the official ApiClient without its generated classes.

Paths and queries are checked as text; the requests themselves against the lab's API server over
HTTPS (raw JSON back, names quoted into the path, errors as the client's ApiException).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cluster import ClusterClient
from bot.cluster.resources import DEPLOYMENTS, ENDPOINT_SLICES, NODES, PODS
from bot.cluster.rest import collection_path, query_params
from lab.apiserver import ApiServer, ServingCertificate, Store, write_kubeconfig
from lab.certs import LabPki, generate_pki

TOKEN = "krr-rest-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return generate_pki(tmp_path_factory.mktemp("krr-pki"), [])


@pytest.fixture
def server(pki: LabPki) -> Iterator[ApiServer]:
    api = ApiServer(Store(), TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key))
    try:
        api.start(port=0)
        yield api
    finally:
        api.stop()


def client_of(server: ApiServer, pki: LabPki, tmp_path: Path) -> ClusterClient:
    kubeconfig = write_kubeconfig(tmp_path / "krr-kubeconfig", server.url, TOKEN, namespace="default", ca_pem=pki.ca.read_bytes())
    return ClusterClient.from_kubeconfig(kubeconfig)


def test_collection_paths_follow_the_api_layout() -> None:
    assert collection_path(PODS, namespaced=False) == "/api/v1/pods"
    assert collection_path(PODS, namespaced=True) == "/api/v1/namespaces/{namespace}/pods"
    assert collection_path(NODES, namespaced=False) == "/api/v1/nodes"
    assert collection_path(DEPLOYMENTS, namespaced=True) == "/apis/apps/v1/namespaces/{namespace}/deployments"
    assert collection_path(ENDPOINT_SLICES, namespaced=False) == "/apis/discovery.k8s.io/v1/endpointslices"


def test_query_names_are_the_apis_and_unknown_arguments_are_refused() -> None:
    assert query_params({"limit": 500, "_continue": "abc", "label_selector": "app=web", "watch": None}) == [
        ("limit", 500),
        ("continue", "abc"),
        ("labelSelector", "app=web"),
    ]
    with pytest.raises(TypeError, match="field_selector"):
        query_params({"field_selector": "spec.nodeName=n1"})


def test_objects_come_back_as_the_server_sent_them(server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    """Raw JSON: the server's own timestamp text and fields, not a model's re-serialisation."""
    stored = server.store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}}})
    with client_of(server, pki, tmp_path) as client:
        listed = client.list_objects(NODES)
        got = client.get_object(NODES, "n1")
    assert [o["metadata"] for o in listed] == [stored["metadata"]]
    assert got is not None and got["metadata"]["creationTimestamp"] == stored["metadata"]["creationTimestamp"]
    assert got["kind"] == "Node" and got["apiVersion"] == "v1"


def test_a_name_is_quoted_into_the_path_never_read_as_one(server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    server.store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    with client_of(server, pki, tmp_path) as client:
        assert client.get_object(PODS, "../../../nodes/n1", "default") is None
        assert client.get_object(NODES, "n1?watch=true") is None


def test_ask_imports_neither_slack_nor_the_picture_renderer_nor_the_lab_nor_the_digest() -> None:
    """`kubereach ask` is one process per question: the commands it does not run are not imported."""
    unwanted = "{'slack_bolt', 'slack_sdk', 'cairosvg', 'cairocffi', 'lab', 'bot.digest'}"
    code = (
        "import sys, bot.cli as c; c._register(); c.cli.get_command(None, 'ask'); "
        f"print(' '.join(sorted(({{m.split('.')[0] for m in sys.modules}} | set(sys.modules)) & {unwanted})))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
