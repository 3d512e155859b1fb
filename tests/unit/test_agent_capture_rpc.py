"""The CapturePackets stream over real gRPC with mTLS against a capture that only waits to be stopped:
start → armed → (stop | deadline) → result, INVALID_ARGUMENT before any capture runs, and one
capture set per caller identity (another certificate may capture at the same time)."""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from nodeagent.checks.capture import CaptureLimits, CaptureMatchSpec, CaptureOutcome, CaptureSession, PointRequest, PointResult
from nodeagent.settings import AgentSettings
from tests.polling import eventually
from tests.unit.agent_support import Pem, make_ca, make_leaf, running_agent


class WaitingCapture:
    """A NodeChecks whose capture arms at once and ends when stopped or at its deadline."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[PointRequest, ...], CaptureMatchSpec, CaptureLimits]] = []

    def capture(
        self,
        points: Sequence[PointRequest],
        spec: CaptureMatchSpec,
        limits: CaptureLimits,
        session: CaptureSession,
        on_armed: Callable[[int], None],
    ) -> CaptureOutcome:
        self.calls.append((tuple(points), spec, limits))
        on_armed(len(points))
        ready, _, _ = select.select([session.wake_fd], [], [], limits.max_duration_s)
        return CaptureOutcome(tuple(PointResult(p) for p in points), 1.0, "stopped" if ready else "deadline")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected check {name}")


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pem, Pem, Pem, Path, AgentSettings]:
    directory = tmp_path_factory.mktemp("ka-capture-pki")
    ca, ca_key, ca_cert = make_ca("ka-capture-ca")
    server = make_leaf(ca_key, ca_cert, "localhost", server=True)
    (directory / "ca.pem").write_bytes(ca.cert)
    (directory / "server.pem").write_bytes(server.cert)
    (directory / "server-key.pem").write_bytes(server.key)
    settings = AgentSettings(
        listen="127.0.0.1:0",
        tls_cert=directory / "server.pem",
        tls_key=directory / "server-key.pem",
        tls_client_ca=directory / "ca.pem",
        node="ka-node",
    )
    bot = make_leaf(ca_key, ca_cert, "ka-bot", server=False)
    other = make_leaf(ca_key, ca_cert, "ka-other-bot", server=False)
    return ca, bot, other, directory, settings


@pytest.fixture
def agent(identities: tuple[Pem, Pem, Pem, Path, AgentSettings]) -> Iterator[tuple[WaitingCapture, Callable[[Pem], Any]]]:
    ca, _, _, _, settings = identities
    checks = WaitingCapture()
    channels: list[grpc.Channel] = []
    with running_agent(settings, checks) as server:  # type: ignore[arg-type]

        def stub(identity: Pem) -> pb_grpc.NodeAgentServiceStub:
            creds = grpc.ssl_channel_credentials(ca.cert, identity.key, identity.cert)
            channels.append(grpc.secure_channel(f"localhost:{server.port}", creds))
            return pb_grpc.NodeAgentServiceStub(channels[-1])

        yield checks, stub
        for channel in channels:
            channel.close()


START = pb.CaptureStart(
    points=[pb.CapturePoint(interface="eth0"), pb.CapturePoint(interface="eth0", pod_ip="10.244.1.5")],
    match=pb.CaptureMatch(protocol=pb.PROTOCOL_UDP, addresses=["10.244.1.5", "10.96.0.10"], port=40000, overlay_udp_port=4789),
    max_duration_ms=3000,
)


def open_stream(stub: pb_grpc.NodeAgentServiceStub, start: pb.CaptureStart) -> tuple[Iterator[Any], threading.Event]:
    stop = threading.Event()

    def requests() -> Iterator[pb.CapturePacketsRequest]:
        yield pb.CapturePacketsRequest(start=start)
        stop.wait(20)
        yield pb.CapturePacketsRequest(stop=True)

    return stub.CapturePackets(requests(), timeout=15), stop


def test_start_arms_then_stop_returns_the_result_with_the_validated_capture(agent: Any, identities: Any) -> None:
    checks, stub = agent
    responses, stop = open_stream(stub(identities[1]), START)
    assert next(responses).armed.points_open == 2
    stop.set()
    result = next(responses).result
    assert result.reason == "stopped" and [p.point.pod_ip for p in result.points] == ["", "10.244.1.5"]
    points, spec, limits = checks.calls[0]
    assert points == (PointRequest("eth0"), PointRequest("eth0", pod_ip="10.244.1.5"))
    assert (spec.protocol, spec.port, spec.overlay_udp_port, spec.vni, spec.icmp) == (17, 40000, 4789, None, False)
    assert spec.addresses == (CaptureMatchSpec.address_value("10.244.1.5"), CaptureMatchSpec.address_value("10.96.0.10"))
    assert (limits.max_packets, limits.max_bytes) == (200, 262_144) and limits.max_duration_s <= 3.0


def test_a_second_capture_from_the_same_caller_is_refused_another_caller_may_capture(agent: Any, identities: Any) -> None:
    _, stub = agent
    _, bot, other, _, _ = identities
    first, stop_first = open_stream(stub(bot), START)
    assert next(first).WhichOneof("event") == "armed"
    again, stop_again = open_stream(stub(bot), START)
    with pytest.raises(grpc.RpcError) as refused:
        next(again)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    stop_again.set()
    elsewhere, stop_elsewhere = open_stream(stub(other), START)
    assert next(elsewhere).WhichOneof("event") == "armed"
    stop_first.set()
    stop_elsewhere.set()
    assert next(first).result.reason == next(elsewhere).result.reason == "stopped"
    after, stop_after = open_stream(stub(bot), START)  # the first set ended: its caller may capture again
    assert next(after).WhichOneof("event") == "armed"
    stop_after.set()
    assert next(after).result.reason == "stopped"


def test_the_callers_request_id_is_echoed_and_the_end_is_logged(
    agent: Any, identities: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, stub = agent
    short = pb.CaptureStart(points=START.points, match=START.match, max_duration_ms=100)
    with caplog.at_level(logging.INFO, logger="nodeagent"):
        call = stub(identities[1]).CapturePackets(
            iter([pb.CapturePacketsRequest(start=short)]), timeout=10, metadata=(("x-request-id", "ka-cap-7"),)
        )
        assert [r.WhichOneof("event") for r in call] == ["armed", "result"]
    assert ("x-request-id", "ka-cap-7") in call.initial_metadata()
    assert any("CapturePackets OK" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_the_deadline_ends_a_capture_nobody_stops(agent: Any, identities: Any) -> None:
    _, stub = agent
    short = pb.CaptureStart(points=START.points, match=START.match, max_duration_ms=100)
    responses, stop = open_stream(stub(identities[1]), short)
    assert next(responses).WhichOneof("event") == "armed"
    assert next(responses).result.reason == "deadline"
    stop.set()


INVALID: list[tuple[pb.CapturePacketsRequest, str]] = [
    (pb.CapturePacketsRequest(stop=True), "first message must be start"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(match=START.match)), "1-16 points"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(points=START.points)), "match is required"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(points=START.points, match=START.match, max_duration_ms=99)), "100-5000"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(points=START.points, match=START.match, max_packets=1001)), "1-1000"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(points=START.points, match=START.match, max_bytes=100)), "1024-1048576"),
    (pb.CapturePacketsRequest(start=pb.CaptureStart(points=[pb.CapturePoint(interface="a/b")], match=START.match)), "interface"),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=[pb.CapturePoint(interface="eth0", pod_ip="10.0.0.1", netns_name="x")], match=START.match
            )
        ),
        "at most one",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(points=[pb.CapturePoint(interface="eth0", netns_name="..")], match=START.match)
        ),
        "netns_name",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=START.points, match=pb.CaptureMatch(protocol=pb.PROTOCOL_SCTP, addresses=["10.0.0.1"], port=40000)
            )
        ),
        "PROTOCOL_TCP or PROTOCOL_UDP",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(points=START.points, match=pb.CaptureMatch(protocol=pb.PROTOCOL_TCP, addresses=[], port=40000))
        ),
        "1-32 IPv4",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=START.points, match=pb.CaptureMatch(protocol=pb.PROTOCOL_TCP, addresses=["10.0.0.1"], port=1023)
            )
        ),
        "1024-65535",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=START.points, match=pb.CaptureMatch(protocol=pb.PROTOCOL_TCP, addresses=["10.0.0.1"], port=40000, vni=5)
            )
        ),
        "needs match.overlay_udp_port",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=START.points,
                match=pb.CaptureMatch(
                    protocol=pb.PROTOCOL_TCP, addresses=["10.0.0.1"], port=40000, overlay_udp_port=8472, vni=1 << 24
                ),
            )
        ),
        "vni",
    ),
    (
        pb.CapturePacketsRequest(
            start=pb.CaptureStart(
                points=START.points, match=pb.CaptureMatch(protocol=pb.PROTOCOL_TCP, addresses=["not-an-ip"], port=40000)
            )
        ),
        "not an IP address",
    ),
]


@pytest.mark.parametrize(("message", "reason"), INVALID, ids=[str(i) for i in range(len(INVALID))])
def test_an_invalid_start_is_refused_before_any_capture_runs(agent: Any, identities: Any, message: Any, reason: str) -> None:
    checks, stub = agent
    with pytest.raises(grpc.RpcError) as refused:
        next(stub(identities[1]).CapturePackets(iter([message]), timeout=10))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (refused.value.details() or "")
    assert checks.calls == []


class ArmingThatHangs:
    """A NodeChecks whose capture points never open (stuck, say, finding a pod's namespace) until stopped."""

    def capture(
        self,
        points: Sequence[PointRequest],
        spec: CaptureMatchSpec,
        limits: CaptureLimits,
        session: CaptureSession,
        on_armed: Callable[[int], None],
    ) -> CaptureOutcome:
        select.select([session.wake_fd], [], [], 30)
        return CaptureOutcome(tuple(PointResult(p) for p in points), 1.0, "stopped")


def test_a_deadline_that_passes_while_the_capture_arms_ends_the_call_deadline_exceeded_and_is_logged_so(
    identities: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ca, bot, _, _, settings = identities
    with caplog.at_level(logging.INFO, logger="nodeagent"), running_agent(settings, ArmingThatHangs()) as server:  # type: ignore[arg-type]
        channel = grpc.secure_channel(f"localhost:{server.port}", grpc.ssl_channel_credentials(ca.cert, bot.key, bot.cert))
        try:
            with pytest.raises(grpc.RpcError) as ended:
                next(
                    pb_grpc.NodeAgentServiceStub(channel).CapturePackets(iter([pb.CapturePacketsRequest(start=START)]), timeout=1)
                )
            assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            logged = eventually(
                lambda: [r.getMessage() for r in caplog.records if "CapturePackets" in r.getMessage()],
                what="the agent's end-of-call line",
            )
        finally:
            channel.close()
    assert logged == ["/kubereach.agent.v1.NodeAgentService/CapturePackets DEADLINE_EXCEEDED"]
