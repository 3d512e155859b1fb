"""bot.parse on the paths into and out of the cluster: clients outside as sources, NodePorts, load
balancers and external IPs as targets, names and URLs outside the cluster, nodes as sources; and the
phrasings that must stay what they were (a cluster name with dots is not outside)."""

from __future__ import annotations

import pytest

from bot.parse import ParseError, Question, RefKind, parse_question
from bot.parse.models import OUTSIDE_NAME, EntryKind, Ref


def read(text: str) -> Question:
    question = parse_question(text)
    again = parse_question(question.normalized)
    assert (again.source, again.target, again.port, again.protocol, again.namespace) == (
        question.source,
        question.target,
        question.port,
        question.protocol,
        question.namespace,
    ), question.normalized
    return question


def refused(text: str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_question(text)
    return caught.value


OUTSIDE = Ref(RefKind.OUTSIDE, OUTSIDE_NAME)


@pytest.mark.parametrize(
    "text",
    [
        "why can't external traffic reach nodeport 30080 on node-2",
        "nodeport 30080 on node-2 is unreachable from outside",
        "is nodeport 30080 on node node-2 reachable from the internet?",
        "clients can't reach the node port 30080 on node-2",
        "why does external traffic time out on nodeport 30080 on node-2",
        "outside → nodeport 30080 on node-2",
        "hey, nodeport 30080 on node-2 down?",
        "30080 nodeport on node-2 from outside",
        "from outside, 30080 nodeport on node-2",
        "can't reach nodeport 30080 via node-2 from outside",
        "why can't traffic from outside reach nodeport 30080 on node-2",
        "external → nodeport 30080 on node-2",
    ],
)
def test_a_nodeport_on_a_node_from_outside(text: str) -> None:
    question = read(text)
    assert question.source == OUTSIDE
    assert question.target == Ref(RefKind.NODEPORT, "30080", entry=EntryKind.NODEPORT, node_port=30080, entry_node="node-2")
    assert question.normalized == "outside → nodeport 30080 on node-2"


@pytest.mark.parametrize(
    ("text", "entry", "name"),
    [
        ("why can't clients reach svc web's load balancer", EntryKind.LOAD_BALANCER, "web"),
        ("web's LB is down for external clients", EntryKind.LOAD_BALANCER, "web"),
        ("the load balancer of web from the internet", EntryKind.LOAD_BALANCER, "web"),
        ("can the outside world reach the loadbalancer for svc/web", EntryKind.LOAD_BALANCER, "web"),
        ("frontend-nodeport's external IP unreachable from outside", EntryKind.EXTERNAL_IP, "frontend-nodeport"),
        ("outside to svc web nodeport", EntryKind.NODEPORT, "web"),
        ("svc web's nodeport", EntryKind.NODEPORT, "web"),
        ("the nodeport of frontend-nodeport", EntryKind.NODEPORT, "frontend-nodeport"),
        ("why can't clients reach web via its load balancer", EntryKind.LOAD_BALANCER, "web"),
        ("is web reachable through its external ip from outside", EntryKind.EXTERNAL_IP, "web"),
        ("LB for web not reachable from outside", EntryKind.LOAD_BALANCER, "web"),
    ],
)
def test_a_services_way_in_by_name(text: str, entry: EntryKind, name: str) -> None:
    question = read(text)
    assert question.source == OUTSIDE
    assert (question.target.kind, question.target.name, question.target.entry) == (RefKind.SERVICE, name, entry)
    assert question.normalized == f"outside → svc/{name} {entry.value}"


def test_a_way_in_keeps_its_namespace_port_and_node() -> None:
    question = read("can the outside world reach web's load balancer in shop on port 80")
    assert question.target == Ref(RefKind.SERVICE, "web", "shop", entry=EntryKind.LOAD_BALANCER)
    assert (question.port, question.normalized) == (80, "outside → shop/svc/web:80 load-balancer")
    node_port = read("svc/web nodeport 30081 on node-3 over udp from outside")
    assert node_port.target.entry_node == "node-3" and node_port.target.node_port == 30081
    assert node_port.normalized == "outside → svc/web nodeport 30081 on node-3 over udp"
    in_namespace = read("outside → nodeport 30080 in shop")
    assert in_namespace.target.namespace == "shop"


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("why can't external traffic reach frontend", OUTSIDE),
        ("is svc/web reachable from the internet", OUTSIDE),
        ("clients → api:8080", OUTSIDE),
        ("why can't 203.0.113.7 reach nodeport 30080", Ref(RefKind.IP, "203.0.113.7")),
    ],
)
def test_clients_outside_as_sources(text: str, source: Ref) -> None:
    question = read(text)
    assert question.source.kind is source.kind and question.source.name == source.name


@pytest.mark.parametrize(
    ("text", "name", "port"),
    [
        ("why can't frontend reach example.com", "example.com", None),
        ("frontend → api.stripe.com:443", "api.stripe.com", 443),
        ("frontend → www.example.com:443", "www.example.com", 443),
        ("frontend → https://www.example.com/path", "www.example.com", 443),
        ("frontend → http://downloads.example.com/file.tgz", "downloads.example.com", 80),
        ("frontend → http://x.example.org:8080/", "x.example.org", 8080),
    ],
)
def test_names_and_urls_outside_the_cluster(text: str, name: str, port: int | None) -> None:
    question = read(text)
    assert question.target.dns_name == name and question.port == port
    # A NAME.NAMESPACE form (example.com) stays a service here: the resolver looks it up in the
    # cluster first, and only a namespace the cluster does not have makes it a name outside.
    assert question.target.kind is (RefKind.SERVICE if name.count(".") == 1 else RefKind.DNS)


@pytest.mark.parametrize(
    ("text", "kind", "namespace"),
    [
        ("frontend → api.shop:8080", RefKind.SERVICE, "shop"),
        ("frontend → api.shop.svc:8080", RefKind.SERVICE, "shop"),
        ("frontend → api.shop.svc.cluster.local:8080", RefKind.SERVICE, "shop"),
        ("frontend → redis-0.redis.shop.svc.cluster.local", RefKind.POD, "shop"),
        ("frontend → 10-244-1-5.shop.pod.cluster.local:6379", RefKind.IP, "shop"),
    ],
)
def test_cluster_names_with_dots_are_not_outside(text: str, kind: RefKind, namespace: str) -> None:
    question = read(text)
    assert (question.target.kind, question.target.namespace) == (kind, namespace)
    assert question.target.kind is not RefKind.DNS


def test_a_name_in_the_cluster_domain_that_is_no_service_or_pod_is_refused() -> None:
    error = refused("frontend → api.shop.cluster.local:8080")
    assert "cluster domain" in error.message and "api.shop.svc.cluster.local" in error.message


def test_a_name_before_a_nodeport_is_left_to_the_resolver() -> None:
    """``node-2's nodeport 30080``: only the cluster knows node-2 is a node and not a service."""
    question = read("why does external traffic time out on node-2's nodeport 30080")
    assert question.target == Ref(RefKind.SERVICE, "node-2", entry=EntryKind.NODEPORT, node_port=30080)
    assert read("node node-2's nodeport 30080 from outside").target.entry_node == "node-2"


def test_a_port_on_a_node_from_outside_is_left_to_the_resolver() -> None:
    """``port 30080 on node-2``: the resolver finds whether some service has 30080 as NodePort."""
    question = read("port 30080 on node-2 from outside")
    assert (question.source, question.target, question.port) == (OUTSIDE, Ref(RefKind.WORKLOAD, "node-2"), 30080)


def test_nodes_as_sources() -> None:
    assert read("why can't node-1 reach api").source == Ref(RefKind.WORKLOAD, "node-1")
    assert read("from node node-1 to api:8080").source == Ref(RefKind.NODE, "node-1")
    assert read("node-2:10250 from node/node-1").target == Ref(RefKind.WORKLOAD, "node-2")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("frontend → outside", "where traffic comes from"),
        ("frontend to the internet", "where traffic comes from"),
        ("pod/web's nodeport", "only services have NodePorts"),
        ("why can't clients reach the load balancer", "needs the service it belongs to"),
        ("frontend → https://www.example.com:99999/", "out of range"),
        ("web's load balancer → api", "is a target"),
        ("outside → nodeport 99999", "out of range"),
        ("outside → nodeport 30080 port 80", "Two ports (NodePort 30080 and 80)"),
        ("outside → nodeport 30080 on node-2 and nodeport 30081", "a question has one source and one target"),
    ],
)
def test_bad_ways_in_and_out_say_what_is_wrong(text: str, says: str) -> None:
    error = refused(text)
    assert says in error.message
    assert error.example and error.closest_form


def test_possessives_and_contractions() -> None:
    assert read("it's web's lb that clients can't reach").target.entry is EntryKind.LOAD_BALANCER
    assert read("what's up, frontend can't reach api").source == Ref(RefKind.WORKLOAD, "frontend")


def test_external_as_an_adjective_beside_a_name_is_skipped() -> None:
    service = read("why can't frontend reach the external service api.stripe.com:443")
    assert (service.target.kind, service.target.name, service.port) == (RefKind.DNS, "api.stripe.com", 443)
    client = read("external client 203.0.113.7 can't reach web's lb")
    assert client.source == Ref(RefKind.IP, "203.0.113.7", address=client.source.address)
    assert "external client" in client.ignored
    users = read("web's LB is down for external users")
    assert (users.source, users.ignored) == (OUTSIDE, ("users",))
