"""The agent's gRPC surface without the kernel: validation, status mapping, deadlines, mTLS, health."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from nodeagent.__main__ import parse_args, settings_from
from nodeagent.checks.conntrack import ConntrackStats
from nodeagent.checks.probe import ProbeOutcome, ProbeResult
from nodeagent.errors import KernelQueryFailed, PodNotFound
from nodeagent.server import SERVICE_NAME, ServerConfigError, build_server, write_port_file
from nodeagent.service import NamespaceTarget
from nodeagent.settings import AgentSettings
from tests.unit.agent_support import Pki, client_channel, make_pki, running_agent, tls_settings


class RecordingChecks:
    """A NodeChecks that records each call; `answer` decides what a call returns or raises."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.release = threading.Event()
        self.release.set()
        self.error: Exception | None = None

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        self.release.wait(30)
        if self.error is not None:
            raise self.error

    def _probe(self) -> ProbeResult:
        return ProbeResult(ProbeOutcome.REFUSED, 1.5, "Connection refused (ECONNREFUSED)", 4026531840)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> Any:
            self._record(name, *args)
            if name.startswith("probe_tcp") or name.startswith("probe_udp"):
                return self._probe()
            raise AssertionError(f"unexpected check {name}")

        return call


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("ka-pki"))


@pytest.fixture
def checks() -> RecordingChecks:
    return RecordingChecks()


@pytest.fixture
def channel(pki: Pki, checks: RecordingChecks) -> Iterator[grpc.Channel]:
    with (
        running_agent(tls_settings(pki, node="ka-node"), checks) as agent,  # type: ignore[arg-type]
        client_channel(pki, agent.port) as opened,
    ):
        yield opened
    checks.release.set()


@pytest.fixture
def stub(channel: grpc.Channel) -> pb_grpc.NodeAgentServiceStub:
    return pb_grpc.NodeAgentServiceStub(channel)


INVALID: list[tuple[str, Any, str]] = [
    ("LocatePod", pb.LocatePodRequest(pod_ip="not-an-ip"), "pod_ip"),
    ("LocatePod", pb.LocatePodRequest(pod_ip=""), "pod_ip is required"),
    ("LocatePod", pb.LocatePodRequest(pod_ip="10.0.0.300"), "not an IP address"),
    ("LocatePod", pb.LocatePodRequest(pod_ip="1" * 100_000), "at most 64"),
    ("LookupRoute", pb.LookupRouteRequest(destination="1.2.3"), "destination"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", netns_name="../x"), "netns_name"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", netns_name="a/b"), "netns_name"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", netns_name="n" * 300), "at most 256"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", pod_ip="10.0.0.2", netns_name="ka"), "at most one"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", source="10.0.0.2", input_interface="a/b"), "interface"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", input_interface="eth0"), "needs source"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="10.0.0.1", port=0), "port 0"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="10.0.0.1", port=65536), "port 65536"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, timeout_ms=10_001), "timeout_ms"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="::zz", port=80), "target_ip"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, netns_name=".."), "netns_name"),
    ("ProbeUdp", pb.ProbeUdpRequest(target_ip="10.0.0.1", port=53, payload=b"x" * 513), "payload"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, source_port=80), "source_port 80"),
    ("ProbeUdp", pb.ProbeUdpRequest(target_ip="10.0.0.1", port=53, source_port=70_000), "source_port 70000"),
    ("ProbeUdp", pb.ProbeUdpRequest(target_ip="10.0.0.1", port=53, datagram_size=8973), "datagram_size 8973"),
    ("ProbeDns", pb.ProbeDnsRequest(name="a..b"), "not a DNS name"),
    ("ProbeDns", pb.ProbeDnsRequest(name="x" * 300), "at most 256"),
    ("ProbeDns", pb.ProbeDnsRequest(name="web", record_type="ANY"), "record_type"),
    ("ProbeDns", pb.ProbeDnsRequest(name="web", server="dns.local"), "server"),
    ("ProbeDns", pb.ProbeDnsRequest(name="web", netns_name="../etc"), "netns_name"),
    ("GetServiceNat", pb.GetServiceNatRequest(vip="10.96.0.1", port=443), "protocol must be one of"),
    ("GetServiceNat", pb.GetServiceNatRequest(vip="10.96.0.1", port=0, protocol=pb.PROTOCOL_TCP), "port 0"),
    (
        "GetServiceNat",
        pb.GetServiceNatRequest(vip="10.240.0.11", port=30080, protocol=pb.PROTOCOL_TCP, entry=9),  # type: ignore[arg-type]
        "entry must be one of",
    ),
    (
        "GetServiceNat",
        pb.GetServiceNatRequest(vip="node-1", port=30080, protocol=pb.PROTOCOL_TCP, entry=pb.ENTRY_NODE_PORT),
        "vip",
    ),
    ("QueryConntrack", pb.QueryConntrackRequest(limit=10_001), "limit"),
    ("QueryConntrack", pb.QueryConntrackRequest(orig_src="10.0.0"), "orig_src"),
    ("QueryConntrack", pb.QueryConntrackRequest(orig_dport=70_000), "orig_dport"),
    ("GetFilterState", pb.GetFilterStateRequest(src="10.0.0.1", dst="10.0.0.2"), "protocol must be one of"),
    (
        "GetFilterState",
        pb.GetFilterStateRequest(src="10.0.0.1", dst="10.0.0.2", protocol=pb.PROTOCOL_TCP, interfaces=["eth0"] * 17),
        "at most 16",
    ),
    ("ListSockets", pb.ListSocketsRequest(port=65_536), "port 65536"),
    ("ListSockets", pb.ListSocketsRequest(protocol=pb.PROTOCOL_SCTP), "protocol must be one of"),
    ("LookupRoute", pb.LookupRouteRequest(destination="fe80::1%eth0"), "scoped IPv6"),
    ("LookupRoute", pb.LookupRouteRequest(destination="fe80::1", source="fe80::2%1"), "scoped IPv6"),
    ("LookupRoute", pb.LookupRouteRequest(destination="10.0.0.1", source="fd00::1"), "mix IPv4 and IPv6"),
    ("LookupRoute", pb.LookupRouteRequest(destination="fd00::1", source="10.0.0.1"), "mix IPv4 and IPv6"),
    ("ProbeTcp", pb.ProbeTcpRequest(target_ip="fe80::1%lo", port=80), "scoped IPv6"),
    (
        "GetFilterState",
        pb.GetFilterStateRequest(src="10.0.0.1", dst="fd00::2", protocol=pb.PROTOCOL_TCP),
        "mix IPv4 and IPv6",
    ),
    ("GetEgressNat", pb.GetEgressNatRequest(pod_ip="10.244.1.5", destination="203.0.113.10"), "protocol must be one of"),
    ("GetEgressNat", pb.GetEgressNatRequest(destination="203.0.113.10", protocol=pb.PROTOCOL_TCP), "pod_ip is required"),
    ("GetEgressNat", pb.GetEgressNatRequest(pod_ip="10.244.1.5", destination="example.com", protocol=1), "destination"),
    ("GetEgressNat", pb.GetEgressNatRequest(pod_ip="10.244.1.5", destination="fd00::1", protocol=1), "mix IPv4 and IPv6"),
    ("GetEgressNat", pb.GetEgressNatRequest(pod_ip="10.244.1.5", destination="203.0.113.10", protocol=1, port=70_000), "port"),
]


@pytest.mark.parametrize(("rpc", "request_message", "reason"), INVALID, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(INVALID)])
def test_invalid_request_is_rejected_before_any_check_runs(
    stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks, rpc: str, request_message: Any, reason: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        getattr(stub, rpc)(request_message, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in caught.value.details()
    assert checks.calls == []


def test_valid_probe_reaches_the_check_with_parsed_arguments(stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks) -> None:
    answer = stub.ProbeTcp(pb.ProbeTcpRequest(pod_ip="10.244.1.5", target_ip="10.96.0.1", port=8080), timeout=10)
    assert checks.calls == [("probe_tcp", (NamespaceTarget(pod_ip="10.244.1.5"), "10.96.0.1", 8080, 2.0, None))]
    assert answer.result.outcome == pb.PROBE_OUTCOME_REFUSED
    assert answer.result.error == "Connection refused (ECONNREFUSED)"
    assert answer.result.latency_ms == 1.5


def test_pod_not_on_this_node_answers_not_found(stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks) -> None:
    checks.error = PodNotFound("10.244.9.9 is not the IP of a pod on this node")
    with pytest.raises(grpc.RpcError) as caught:
        stub.LocatePod(pb.LocatePodRequest(pod_ip="10.244.9.9"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "10.244.9.9" in caught.value.details()


def test_kernel_failure_answers_with_the_errno_text(stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks) -> None:
    checks.error = KernelQueryFailed("reading the node's links", errno.EPERM)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "Operation not permitted (EPERM)" in caught.value.details()


def test_transient_kernel_failure_answers_unavailable(stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks) -> None:
    checks.error = KernelQueryFailed("sock_diag dump", errno.EBUSY)
    with pytest.raises(grpc.RpcError) as caught:
        stub.ListSockets(pb.ListSocketsRequest(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_slow_check_hits_the_deadline_and_the_server_keeps_answering(
    channel: grpc.Channel, stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks
) -> None:
    checks.release.clear()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, timeout_ms=100), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert checks.calls, "the check had started"
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        checks.release.set()


def test_request_id_from_the_caller_is_echoed(stub: pb_grpc.NodeAgentServiceStub) -> None:
    _, call = stub.ProbeUdp.with_call(
        pb.ProbeUdpRequest(target_ip="10.0.0.1", port=53), timeout=10, metadata=(("x-request-id", "ka-req-42"),)
    )
    assert ("x-request-id", "ka-req-42") in call.initial_metadata()


def test_request_id_is_generated_when_missing(stub: pb_grpc.NodeAgentServiceStub) -> None:
    _, call = stub.ProbeUdp.with_call(pb.ProbeUdpRequest(target_ip="10.0.0.1", port=53), timeout=10)
    ids = [value for key, value in call.initial_metadata() if key == "x-request-id"]
    assert len(ids) == 1 and len(ids[0]) == 32


def test_client_without_certificate_is_refused(pki: Pki, checks: RecordingChecks) -> None:
    with (
        running_agent(tls_settings(pki), checks) as agent,  # type: ignore[arg-type]
        client_channel(pki, agent.port, with_cert=False) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.NodeAgentServiceStub(channel).ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert checks.calls == []


def test_client_certificate_from_another_ca_is_refused(pki: Pki, checks: RecordingChecks) -> None:
    with (
        running_agent(tls_settings(pki), checks) as agent,  # type: ignore[arg-type]
        client_channel(pki, agent.port, pki.stranger) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.NodeAgentServiceStub(channel).ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert checks.calls == []


def test_client_certificate_from_the_ca_is_accepted(pki: Pki, checks: RecordingChecks) -> None:
    with (
        running_agent(tls_settings(pki), checks) as agent,  # type: ignore[arg-type]
        client_channel(pki, agent.port) as channel,
    ):
        answer = pb_grpc.NodeAgentServiceStub(channel).ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=5)
    assert answer.result.outcome == pb.PROBE_OUTCOME_REFUSED


def test_health_answers_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status == (
            health_pb2.HealthCheckResponse.SERVING
        )


def test_reflection_lists_the_agent_service(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_insecure_mode_serves_plain_tcp(checks: RecordingChecks) -> None:
    with (
        running_agent(AgentSettings(listen="127.0.0.1:0", insecure=True), checks) as agent,  # type: ignore[arg-type]
        grpc.insecure_channel(f"127.0.0.1:{agent.port}") as channel,
    ):
        answer = pb_grpc.NodeAgentServiceStub(channel).ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=5)
    assert answer.result.outcome == pb.PROBE_OUTCOME_REFUSED


def test_tls_is_required_unless_insecure_is_given() -> None:
    import asyncio

    with pytest.raises(ServerConfigError, match="--tls-cert"):
        asyncio.run(build_server(AgentSettings(listen="127.0.0.1:0")))


def test_cli_flags_override_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEREACH_AGENT_NODE", "from-env")
    monkeypatch.setenv("KUBEREACH_AGENT_LISTEN", "127.0.0.1:7000")
    settings = settings_from(parse_args(["--node", "ka-node-1", "--insecure"]))
    assert settings.node == "ka-node-1"
    assert settings.listen == "127.0.0.1:7000"
    assert settings.insecure is True


def test_port_file_holds_the_port(tmp_path: Path) -> None:
    target = tmp_path / "ka-port"
    write_port_file(target, 43123)
    assert target.read_text() == "43123\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ka-port"]


MALFORMED = [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 11]


@pytest.mark.parametrize("body", MALFORMED, ids=["garbage", "truncated-field", "overlong-varint"])
def test_malformed_message_answers_invalid_argument_before_any_check(
    channel: grpc.Channel, checks: RecordingChecks, body: bytes
) -> None:
    raw = channel.unary_unary(f"/{SERVICE_NAME}/LookupRoute", request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as caught:
        raw(body, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid protobuf message" in caught.value.details()
    assert checks.calls == []


class SlowProbes:
    """Probes block until released; quick reads answer at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.probes_started = 0

    def probe_tcp(self, *args: Any) -> ProbeResult:
        self.probes_started += 1
        self.release.wait(60)
        return ProbeResult(ProbeOutcome.CONNECTED, 1.0, "", 4026531840)

    def conntrack_stats(self) -> ConntrackStats:
        return ConntrackStats(
            count=7, max=262144, found=0, invalid=0, insert=0, insert_failed=0, drop=0, early_drop=0, search_restart=0
        )


def _poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_probes_filling_their_pool_leave_quick_reads_and_health_answering(pki: Pki) -> None:
    """Slow probes fill their own pool and admission limit; the next probe is refused as busy at
    once, while conntrack stats and health still answer (they do not queue behind the probes)."""
    slow = SlowProbes()
    settings = tls_settings(pki, node="ka-busy", max_workers=1, read_workers=1)
    with running_agent(settings, slow) as agent, client_channel(pki, agent.port) as channel:  # type: ignore[arg-type]
        stub = pb_grpc.NodeAgentServiceStub(channel)
        limit = agent.runner.max_in_flight
        pending = [
            stub.ProbeTcp.future(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, timeout_ms=10_000), timeout=60)
            for _ in range(limit)
        ]
        try:
            _poll(lambda: agent.runner.in_flight == limit, f"{limit} probes in flight")
            with pytest.raises(grpc.RpcError) as caught:
                stub.ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80), timeout=30)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "busy" in caught.value.details()
            stats = stub.GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=30)
            assert stats.stats.count == 7
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert slow.probes_started == 1, "one probe thread, the rest queued"
        finally:
            slow.release.set()
        assert all(f.result(timeout=60).result.outcome == pb.PROBE_OUTCOME_CONNECTED for f in pending)


def test_a_probe_that_cannot_finish_within_the_callers_deadline_is_not_started(
    stub: pb_grpc.NodeAgentServiceStub, checks: RecordingChecks
) -> None:
    """Cut short, it would report "timed out" — a fault the network did not show."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.ProbeTcp(pb.ProbeTcpRequest(target_ip="10.0.0.1", port=80, timeout_ms=10_000), timeout=3)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "retry later" in caught.value.details()
    assert checks.calls == []


def _health(channel: grpc.Channel) -> Any:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10).status


def test_health_turns_not_serving_when_the_nodes_namespace_is_gone(pki: Pki, checks: RecordingChecks) -> None:
    settings = tls_settings(pki, node="ka-node", host_netns="ka-no-such-namespace")
    with running_agent(settings, checks) as agent, client_channel(pki, agent.port) as channel:  # type: ignore[arg-type]
        _poll(lambda: _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING, "NOT_SERVING")
        assert agent.can_serve() == (False, "the node's namespace ka-no-such-namespace is gone")


class HungReads:
    """Conntrack stats hang in the kernel until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def conntrack_stats(self) -> ConntrackStats:
        self.release.wait(60)
        return ConntrackStats(
            count=1, max=2, found=0, invalid=0, insert=0, insert_failed=0, drop=0, early_drop=0, search_restart=0
        )


def test_health_turns_not_serving_only_while_every_read_thread_is_hung(pki: Pki) -> None:
    hung = HungReads()
    settings = tls_settings(pki, node="ka-node", read_workers=1, check_timeout_seconds=0.2)
    with running_agent(settings, hung) as agent, client_channel(pki, agent.port) as channel:  # type: ignore[arg-type]
        try:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.NodeAgentServiceStub(channel).GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            _poll(lambda: _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING, "NOT_SERVING while hung")
        finally:
            hung.release.set()
        _poll(lambda: _health(channel) == health_pb2.HealthCheckResponse.SERVING, "SERVING once the thread is back")
        assert agent.can_serve() == (True, "")
