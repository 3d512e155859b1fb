"""The reliability suite: attacks and faults against `kubereach serve`, `ask`, the agents and the
history on the lab, and a table of what each survived — tried / rejected / crashed / lost / stuck.

    sudo .venv/bin/python bench/reliability.py                 # the full counts, ~10 minutes on 2 cores
    sudo .venv/bin/python bench/reliability.py --quick         # small counts, ~4 minutes

Bounded in time and count, it stops by itself and removes its lab (prefix `krel`) in `finally`. All
traffic stays on 127.0.0.1 and inside the lab's namespaces. Columns:

- tried: requests, inputs or investigations attempted;
- rejected: answered as refused (HTTP 4xx; INVALID_ARGUMENT; a question read as bad input);
- crashed: a process died, HTTP 5xx, an unhandled exception, gRPC UNKNOWN;
- lost: an investigation with no record (or, for Slack faults, no answer in its thread);
- stuck: an investigation still `running` after everything settled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shlex
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from bot.settings import load_settings  # noqa: E402
from kubereach.agent.v1 import agent_pb2 as pb  # noqa: E402
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc  # noqa: E402
from lab.errors import LabError  # noqa: E402
from lab.slackstub import SlackStub  # noqa: E402
from lab.slackstub.sender import SlackSender  # noqa: E402
from lab.slackstub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign  # noqa: E402
from lab.state import load_state  # noqa: E402

KUBEREACH = str(Path(sys.executable).parent / "kubereach")
HEALTHY_QUESTION = "why can't frontend reach api"
SLOW_QUESTION = "why can't frontend reach ledger"  # denied by policy: its probes time out, so it runs a while
NOT_FAULTS = {"NO_FAULT_FOUND", "AGENT_UNREACHABLE", "UNDETERMINED"}
SETTLE_S = 120.0


@dataclass
class Row:
    """One line of the table."""

    name: str
    tried: int = 0
    rejected: int = 0
    crashed: int = 0
    lost: int = 0
    stuck: int = 0
    note: str = ""


ROWS: list[Row] = []
SERVE_LOGS: list[Path] = []
"""Logs of the serve processes, removed at the end unless --keep-logs."""


def row(name: str, **counts: Any) -> Row:
    entry = Row(name, **counts)
    ROWS.append(entry)
    print(
        f"  {entry.name}: tried {entry.tried}, rejected {entry.rejected}, crashed {entry.crashed}, "
        f"lost {entry.lost}, stuck {entry.stuck}. {entry.note}",
        flush=True,
    )
    return entry


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def poll(condition: Callable[[], bool], deadline_s: float, every_s: float = 0.2) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


# ------------------------------------------------------------------------------ the lab and its state


def lab_cli(prefix: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBEREACH, "lab", "--prefix", prefix, *args], capture_output=True, text=True, check=check, timeout=600)


def node_snapshot(prefix: str, nodes: list[str]) -> dict[str, str]:
    """Each node's addresses, routes, rules, nftables ruleset (stateless) and forwarding sysctls."""
    out = {}
    for node in nodes:
        ns = f"{prefix}-{node}"
        parts = []
        for argv in (
            ["ip", "-n", ns, "-o", "addr"],
            ["ip", "-n", ns, "route", "show", "table", "all"],
            ["ip", "-n", ns, "rule"],
            ["ip", "netns", "exec", ns, "nft", "-s", "list", "ruleset"],
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-a",
                "-r",
                r"^net\.ipv[46]\.(ip_forward|conf\..*\.(rp_filter|forwarding|proxy_arp))",
            ],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
            parts.append(f"$ {' '.join(argv[-3:])}\n{proc.stdout}")
        links = subprocess.run(["ip", "-n", ns, "-d", "-j", "link"], capture_output=True, text=True, check=False, timeout=60)
        promiscuous = sorted(f"{link['ifname']} {link.get('promiscuity', 0)}" for link in json.loads(links.stdout or "[]"))
        parts.append("$ promiscuity (capture never sets it)\n" + "\n".join(promiscuous))
        packet = subprocess.run(
            ["ip", "netns", "exec", ns, "cat", "/proc/net/packet"], capture_output=True, text=True, check=False, timeout=60
        )
        parts.append(f"$ packet sockets open (a capture closes its own)\n{len(packet.stdout.splitlines()[1:])}")
        out[node] = "\n".join(parts)
    return out


def history_rows(url: str) -> dict[str, tuple[str, str | None, float | None]]:
    """public id → (status, verdict code, duration ms)."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execute(text("SELECT public_id, status, verdict_code, duration_ms FROM investigations"))
            return {r[0]: (r[1], r[2], r[3]) for r in result}
    except Exception:  # noqa: BLE001 - a bench reads what it can
        return {}
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------ serve as a process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`kubereach serve` as its own process, with the lab's Slack stand-in as its Slack."""

    def __init__(self, config: str, db_url: str, stub: SlackStub, *, grace: float = 5.0, port: int | None = None) -> None:
        self.secret = secrets.token_hex(16)
        self.port = port or free_port()
        self.config, self.db_url, self.stub, self.grace = config, db_url, stub, grace
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}/slack/events"
        self.sender = SlackSender(self.url, self.secret, stub, timeout=30)
        self.log = tempfile.NamedTemporaryFile(prefix="krel-serve-", suffix=".log", delete=False)  # noqa: SIM115
        SERVE_LOGS.append(Path(self.log.name))

    def start(self, secret: str | None = None) -> Serve:
        if secret is not None:
            self.secret = secret
            self.sender = SlackSender(self.url, self.secret, self.stub, timeout=30)
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            KUBEREACH_DATABASE_URL=self.db_url,
            KUBEREACH_SLACK_BOT_TOKEN=self.stub.state.bot_token,
            KUBEREACH_SLACK_SIGNING_SECRET=self.secret,
            KUBEREACH_SLACK_API_URL=self.stub.base_url,
        )
        self.proc = subprocess.Popen(
            [
                KUBEREACH,
                "--config",
                self.config,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--grace",
                str(self.grace),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        if not poll(self._listening, 60):
            raise RuntimeError(f"serve did not start; see {self.log.name}")
        return self

    def _listening(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def raw_post(port: int, body: bytes, headers: dict[str, str], *, content_length: str | None = None) -> int:
    """POST with exactly these headers (and, if given, a Content-Length that lies); the HTTP status or 0."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        head = ["POST /slack/events HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        s.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                data += chunk
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


# ------------------------------------------------------------------------------ Slack attacks


def settle(stub: SlackStub, url: str, deadline_s: float = 30.0) -> None:
    """Wait until the stand-in has seen no new call and no investigation runs, for 2 s (bounded)."""
    last = (-1, -1)
    stable_since = time.monotonic()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        running = sum(1 for s, _, _ in history_rows(url).values() if s == "running")
        now = (len(stub.calls()), running)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif running == 0 and time.monotonic() - stable_since > 2:
            return
        time.sleep(0.25)


def attempt_once(attempt: Callable[[], int]) -> int:
    """The HTTP status of one attempt; 0 when the app closed the connection without answering."""
    try:
        return attempt()
    except (LabError, OSError):
        return 0


def slack_attacks(serve: Serve, stub: SlackStub, channel: str, user: str, n: int, db_url: str) -> None:
    sender = serve.sender
    now = int(time.time())

    def measure(name: str, attempts: list[Callable[[], int]], *, quiet_ack_is_refusal: bool = False) -> None:
        calls, rows = len(stub.calls()), len(history_rows(db_url))
        statuses = [attempt_once(attempt) for attempt in attempts]
        settle(stub, db_url)
        started = len(history_rows(db_url)) - rows
        made = [c for c in stub.calls()[calls:] if c.method != "auth.test"]  # who-am-I, not a post
        posted = len(made)
        methods = dict(Counter(c.method for c in made))
        # 0: the app closed the connection without an answer — a refusal while it keeps running.
        rejected = sum(1 for s in statuses if 400 <= s < 500 or (s == 0 and serve.alive))
        if quiet_ack_is_refusal and started == 0 and posted == 0:
            rejected = len(statuses)  # acknowledged (so Slack stops retrying) and dropped: nothing happened
        crashed = sum(1 for s in statuses if s >= 500) + (0 if serve.alive else 1)
        row(
            f"Slack: {name}",
            tried=len(statuses),
            rejected=rejected,
            crashed=crashed,
            note=f"{started} investigations started, {posted} Slack API calls{' ' + str(methods) if methods else ''}; "
            f"statuses {dict(Counter(statuses))}",
        )

    def cmd(**options: Any) -> Callable[[], int]:
        return lambda: sender.slash_command("/reach", HEALTHY_QUESTION, channel=channel, user=user, **options).status

    measure("forged signature", [cmd(forge=True) for _ in range(n)])
    measure("stale timestamp (-10 min)", [cmd(timestamp=now - 600) for _ in range(n)])
    measure("future timestamp (+10 min)", [cmd(timestamp=now + 600) for _ in range(n)])
    measure("unsigned", [cmd(omit_headers=(SIGNATURE_HEADER, TIMESTAMP_HEADER)) for _ in range(n)])
    request = sender.slash_command_request("/reach", HEALTHY_QUESTION, channel=channel, user=user)

    def non_numeric() -> int:
        headers = {
            "Content-Type": request.content_type,
            TIMESTAMP_HEADER: "soon",
            SIGNATURE_HEADER: sign(serve.secret, "soon", request.body),
        }
        return raw_post(serve.port, request.body, headers)

    measure("non-numeric timestamp", [non_numeric for _ in range(n)])
    evil = json.dumps(
        {"type": "event_callback", "event": {"type": "app_mention", "channel": channel, "user": user, "text": "<!channel> hi"}}
    )
    bodies = [
        (b"{", "application/json", None),
        (b"\xff\xfe\xfd", "application/json", None),
        (b"[" * 200_000, "application/json", None),
        (evil.encode(), "application/json", None),
        (b"payload=%7B", "application/x-www-form-urlencoded", None),
        (b"{}", "application/json", "-1"),
        (b"{}", "application/json", "99999999"),
    ]
    unsigned = [
        (lambda b=b, ct=ct, cl=cl: raw_post(serve.port, b, {"Content-Type": ct}, content_length=cl)) for b, ct, cl in bodies
    ]
    measure("malformed, unsigned (bad JSON, non-UTF-8, deep nesting, bad Content-Length)", unsigned * max(1, n // len(bodies)))
    big = sender.slash_command_request("/reach", HEALTHY_QUESTION + " " + "x" * 10_000_000, channel=channel, user=user)
    measure("oversized, signed (10 MB command)", [lambda: sender.deliver(big).status for _ in range(max(1, n // 10))])
    # Replays: one genuine command (answered), then the same signed request again, as captured.
    stamp = int(time.time())
    signature = sign(serve.secret, stamp, request.body)
    replay_headers = {"Content-Type": request.content_type, TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: signature}
    known = set(history_rows(db_url))
    raw_post(serve.port, request.body, replay_headers)
    investigation_ends(db_url, known, SETTLE_S)  # the genuine request's investigation, finished
    settle(stub, db_url)
    replays = [lambda: raw_post(serve.port, request.body, replay_headers) for _ in range(n)]
    measure("replayed within 5 min", replays, quiet_ack_is_refusal=True)
    serve.stop()
    serve.start(serve.secret)
    measure("replayed after a restart", replays, quiet_ack_is_refusal=True)


# ------------------------------------------------------------------------------ fuzzed questions


def fuzz_questions(config: str, count: int, deadline_s: float) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from bot.cluster.client import ClusterClient
    from bot.errors import KubereachError
    from bot.parse import parse_question

    cfg = load_settings(Path(config))
    assert cfg.kubeconfig is not None
    client = ClusterClient.from_kubeconfig(cfg.kubeconfig)
    words = [
        "why",
        "can't",
        "cannot",
        "reach",
        "talk",
        "to",
        "pod",
        "svc",
        "service",
        "deploy",
        "frontend",
        "api",
        "ledger",
        "redis",
        "in",
        "shop",
        "payments",
        "->",
        "→",
        ":8080",
        ":53",
        "udp",
        "tcp",
        "10.96.0.10",
        "::1",
        "fe80::1%eth0",
        "*",
        "<!channel>",
        "api.shop.svc.cluster.local",
        "?",
        "'",
        '"',
        "\\",
        "\x00",
        "ns/",
        "web-0",
        "port",
        "from",
    ]
    names = st.one_of(
        st.sampled_from(
            [
                "frontend",
                "api",
                "ledger",
                "redis",
                "prometheus",
                "coredns",
                "web-0",
                "redis-0",
                "nope",
                "api.shop",
                "svc/api",
                "pod/redis-0",
                "deploy/frontend",
                "ledger.payments",
                "10.96.0.10",
                "10.244.1.99",
                "api.shop.svc.cluster.local",
                "ＡＰＩ",
                "a" * 300,
            ]
        ),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{1,10})?", fullmatch=True),
    )
    ports = st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"), st.sampled_from([":http", ":dns", ":53/udp"]))
    forms = st.sampled_from(
        [
            "why can't {a} reach {b}{p}",
            "can {a} talk to {b}{p}?",
            "{a} -> {b}{p}",
            "{a} → {b}{p} in shop",
            "why can't pod {a} reach svc {b}{p} in payments",
            "{a}{p}",
        ]
    )
    grammatical = st.builds(lambda f, a, b, p: f.format(a=a, b=b, p=p), forms, names, names, ports)
    texts = st.one_of(
        grammatical,
        grammatical,
        st.text(max_size=300),
        st.lists(st.sampled_from(words), max_size=14).map(" ".join),
        st.lists(st.one_of(st.sampled_from(words), st.text(string.printable, max_size=12)), max_size=10).map(" ".join),
    )
    counts = Counter()
    crashes: list[str] = []
    end = time.monotonic() + deadline_s

    @settings(max_examples=count, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(texts)
    def one(question: str) -> None:
        if time.monotonic() > end:
            counts["skipped (time)"] += 1
            return
        counts["tried"] += 1
        try:
            parsed = parse_question(question)
        except KubereachError:
            counts["rejected by the parser"] += 1
            return
        except Exception as exc:  # noqa: BLE001 - counting crashes is the point
            crashes.append(f"parse {question!r}: {type(exc).__name__}: {exc}")
            return
        try:
            client.resolve(parsed, default_namespace=None, allowed_namespaces=None)
            counts["resolved"] += 1
        except KubereachError:
            counts["rejected by the resolver"] += 1
        except Exception as exc:  # noqa: BLE001
            crashes.append(f"resolve {question!r}: {type(exc).__name__}: {exc}")

    try:
        one()
    finally:
        client.close()
    row(
        "fuzzed questions through parser and resolver (hypothesis)",
        tried=counts["tried"],
        rejected=counts["rejected by the parser"] + counts["rejected by the resolver"],
        crashed=len(crashes),
        note=f"{dict(counts)}" + (f"; first crash: {crashes[0][:200]}" if crashes else ""),
    )


# ------------------------------------------------------------------------------ fuzzed RPCs


def agent_channel(config: str, node: str) -> tuple[grpc.Channel, str]:
    cfg = load_settings(Path(config))
    tls = cfg.agents.tls
    assert tls is not None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(tls.ca).read_bytes(),
        private_key=Path(tls.key).read_bytes(),
        certificate_chain=Path(tls.cert).read_bytes(),
    )
    address = cfg.agents.nodes[node]
    return grpc.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", f"kubereach-agent.{node}")]
    ), address


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def random_text(rng: random.Random) -> str:
    return rng.choice(
        [
            "",
            "10.244.1.5",
            "10.96.0.10",
            "::1",
            "fe80::1%eth0",
            "fe80::1%1",
            "10.0.0.256",
            "1.2.3",
            "a" * rng.randint(1, 5000),
            "../../etc/passwd",
            "eth0",
            "kube-dns.kube-system.svc.cluster.local",
            "\x00\x01",
            "ä" * 70,
            "*",
            "-1",
            "0x0a000001",
            "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 80))),
        ]
    )


def _repeated(field: Any) -> bool:
    is_repeated = getattr(field, "is_repeated", None)
    return bool(is_repeated) if is_repeated is not None else field.label == 3


def random_int(rng: random.Random, bits: int = 32) -> int:
    return rng.choice([0, 1, 53, 8080, 65535, 65536, 70000, 2**bits - 1, rng.randint(0, 2**bits - 1)])


def random_request(rng: random.Random) -> tuple[str, Any]:
    method, message = rng.choice(
        [
            ("LocatePod", pb.LocatePodRequest),
            ("LookupRoute", pb.LookupRouteRequest),
            ("GetServiceNat", pb.GetServiceNatRequest),
            ("QueryConntrack", pb.QueryConntrackRequest),
            ("GetFilterState", pb.GetFilterStateRequest),
            ("ListSockets", pb.ListSocketsRequest),
            ("ProbeTcp", pb.ProbeTcpRequest),
            ("ProbeUdp", pb.ProbeUdpRequest),
            ("ProbeDns", pb.ProbeDnsRequest),
            ("GetNodeInfo", pb.GetNodeInfoRequest),
            ("GetConntrackStats", pb.GetConntrackStatsRequest),
        ]
    )
    fields: dict[str, Any] = {}
    for f in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        if f.type == f.TYPE_STRING:
            fields[f.name] = [random_text(rng) for _ in range(rng.randint(0, 20))] if _repeated(f) else random_text(rng)
        elif f.type == f.TYPE_BYTES:
            fields[f.name] = os.urandom(rng.choice([0, 10, 512, 513, 4096]))
        elif f.type == f.TYPE_ENUM:
            fields[f.name] = rng.randint(0, 7)
        elif f.type in (f.TYPE_UINT32, f.TYPE_INT32, f.TYPE_UINT64, f.TYPE_INT64):
            value = random_int(rng)
            if f.type in (f.TYPE_INT32,):
                value = rng.randint(-(2**31), 2**31 - 1)
            fields[f.name] = value
    if method.startswith("Probe") and "timeout_ms" in fields:
        fields["timeout_ms"] = min(int(fields["timeout_ms"]), 500) if rng.random() < 0.7 else fields["timeout_ms"]
    try:
        return method, message(**fields)
    except (ValueError, TypeError):
        return method, message()


def random_capture(rng: random.Random) -> list[pb.CapturePacketsRequest]:
    """A CapturePackets stream: a start of random points, match and bounds (sometimes sane), then maybe stop."""
    sane = rng.random() < 0.3
    points = [
        pb.CapturePoint(
            interface=rng.choice(["eth0", "cni0", "flannel.1", random_text(rng)]) if not sane else "eth0",
            pod_ip=rng.choice(["", "10.244.1.5", random_text(rng)]) if not sane else "",
            netns_name=rng.choice(["", "", random_text(rng)]) if not sane else "",
        )
        for _ in range(rng.choice([0, 1, 2, 16, 17]) if not sane else 1)
    ]
    match = pb.CaptureMatch(
        protocol=rng.randint(0, 4) if not sane else pb.PROTOCOL_TCP,
        addresses=[random_text(rng) for _ in range(rng.choice([0, 1, 3, 33]))] if not sane else ["10.244.1.5"],
        port=random_int(rng, 16) if not sane else rng.randint(1024, 65535),
        overlay_udp_port=rng.choice([0, 8472, random_int(rng, 16)]) if not sane else 8472,
        vni=rng.choice([0, 1, random_int(rng, 32)]) if not sane else 1,
        icmp=rng.random() < 0.5,
    )
    start = pb.CaptureStart(
        points=points,
        match=match,
        max_duration_ms=rng.choice([0, 99, 100, 300, 5001, random_int(rng)]) if not sane else 300,
        max_packets=rng.choice([0, 1, 1000, 1001, random_int(rng)]) if not sane else 0,
        max_bytes=rng.choice([0, 1023, 1024, 1048577, random_int(rng)]) if not sane else 0,
    )
    messages = [pb.CapturePacketsRequest(start=start)]
    if rng.random() < 0.5:
        messages.append(pb.CapturePacketsRequest(stop=True))
    if rng.random() < 0.1:
        messages.insert(0, pb.CapturePacketsRequest(stop=True))  # stop before start
    return messages


def fuzz_captures(stub: pb_grpc.NodeAgentServiceStub, pid: int, node: str, count: int, rng: random.Random) -> None:
    """Fuzzed CapturePackets streams, one at a time (one capture set per caller): each ends with a result
    or a refusal, and the agent keeps no packet socket open afterwards."""
    codes: Counter[str] = Counter()
    for _ in range(count):
        try:
            for response in stub.CapturePackets(iter(random_capture(rng)), timeout=15):
                if response.WhichOneof("event") == "result":
                    codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1  # type: ignore[attr-defined]
    alive = Path(f"/proc/{pid}").exists()
    row(
        f"fuzzed CapturePackets streams to the {node} agent",
        tried=count,
        rejected=codes["INVALID_ARGUMENT"],
        crashed=codes["UNKNOWN"] + (0 if alive else 1),
        note=f"codes {dict(codes)}",
    )


def fuzz_rpcs(config: str, prefix: str, node: str, count: int, concurrent: int, seed: int) -> None:
    state = load_state(prefix)
    assert state is not None
    pid = state.processes[f"agent/{node}"]
    channel, _ = agent_channel(config, node)
    stub = pb_grpc.NodeAgentServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    rng = random.Random(seed)
    rss_before = rss_kib(pid)
    codes: Counter[str] = Counter()
    for i in range(count):
        if i % 10 == 9:  # a malformed message: raw bytes that are not the method's protobuf
            method = rng.choice(["LookupRoute", "ProbeTcp", "LocatePod", "QueryConntrack"])
            call = channel.unary_unary(
                f"/kubereach.agent.v1.NodeAgentService/{method}",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            request: Any = os.urandom(rng.randint(1, 64)) + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
        else:
            method, request = random_request(rng)
            call = getattr(stub, method)
        try:
            call(request, timeout=15)
            codes["OK"] += 1
        except grpc.RpcError as exc:
            codes[exc.code().name] += 1  # type: ignore[attr-defined]
    rss_after = rss_kib(pid)
    serving = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    alive = Path(f"/proc/{pid}").exists()
    row(
        f"fuzzed RPCs to the {node} agent (1 in 10 not protobuf)",
        tried=count,
        rejected=codes["INVALID_ARGUMENT"],
        crashed=codes["UNKNOWN"] + (0 if alive else 1),
        note=f"codes {dict(codes)}; RSS {rss_before // 1024} → {rss_after // 1024} MiB; health {'SERVING' if serving else 'NOT SERVING'}",
    )

    fuzz_captures(stub, pid, node, max(10, count // 20), rng)

    # Concurrent: slow probes (dropped by policy) mixed with quick reads, all at once.
    status = json.loads(lab_cli(prefix, "status", "--json").stdout)
    ledger = next(p for p in status["pods"] if p["labels"].get("app") == "ledger")
    src = next(p for p in status["pods"] if p["labels"].get("app") == "frontend" and p["node"] == node)
    source_ip = src["ip"]

    async def storm() -> tuple[Counter[str], int, bool]:
        cfg = load_settings(Path(config))
        tls = cfg.agents.tls
        assert tls is not None
        creds = grpc.ssl_channel_credentials(Path(tls.ca).read_bytes(), Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())
        async with grpc.aio.secure_channel(
            cfg.agents.nodes[node], creds, options=[("grpc.ssl_target_name_override", f"kubereach-agent.{node}")]
        ) as ch:
            s = pb_grpc.NodeAgentServiceStub(ch)
            h = health_pb2_grpc.HealthStub(ch)
            seen: Counter[str] = Counter()

            async def one(i: int) -> None:
                try:
                    if i % 2:
                        await s.ProbeTcp(
                            pb.ProbeTcpRequest(pod_ip=source_ip, target_ip=ledger["ip"], port=8443, timeout_ms=2000), timeout=30
                        )
                    else:
                        await s.GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=30)
                    seen["OK"] += 1
                except grpc.aio.AioRpcError as exc:
                    seen[exc.code().name] += 1

            tasks = [asyncio.ensure_future(one(i)) for i in range(concurrent)]
            await asyncio.sleep(0.5)
            during = (await h.Check(health_pb2.HealthCheckRequest(), timeout=10)).status == health_pb2.HealthCheckResponse.SERVING
            await asyncio.gather(*tasks)
            return seen, rss_kib(pid), during

    seen, rss_peak, during = asyncio.run(storm())
    row(
        f"{concurrent} concurrent RPCs to the {node} agent (half slow probes)",
        tried=concurrent,
        rejected=seen["RESOURCE_EXHAUSTED"],
        crashed=seen["UNKNOWN"] + (0 if Path(f"/proc/{pid}").exists() else 1),
        note=f"codes {dict(seen)}; health during the storm {'SERVING' if during else 'NOT SERVING'}; RSS after {rss_peak // 1024} MiB",
    )
    channel.close()


# ------------------------------------------------------------------------------ faults around investigations


def investigation_ends(url: str, before: set[str], deadline_s: float) -> dict[str, tuple[str, str | None, float | None]]:
    """The investigations started since `before`, once none of them is running (or at the deadline)."""

    def new() -> dict[str, tuple[str, str | None, float | None]]:
        return {k: v for k, v in history_rows(url).items() if k not in before}

    poll(lambda: bool(new()) and all(s != "running" for s, _, _ in new().values()), deadline_s, 0.5)
    return new()


def thread_told(stub: SlackStub, channel: str, since: int) -> bool:
    """A reply went to a thread in `channel` after message index `since` (a verdict or a notice)."""
    return any(m.thread_ts for m in stub.messages(channel)[since:])


def fault_row(
    name: str, rows: dict[str, tuple[str, str | None, float | None]], told: bool | None, serve: Serve | None, note: str = ""
) -> None:
    statuses = Counter(s for s, _, _ in rows.values())
    row(
        name,
        tried=1,
        crashed=0 if serve is None or serve.alive else 1,
        lost=(0 if rows else 1) + (0 if told in (None, True) else 1),
        stuck=statuses["running"],
        note=f"ended {dict(statuses)}, verdicts {sorted({v or '-' for _, v, _ in rows.values()})}; thread told: {told}. {note}".strip(),
    )


def faults(config: str, prefix: str, stub: SlackStub, serve: Serve, channel: str, user: str, db_url: str) -> None:
    state = load_state(prefix)
    assert state is not None

    def ask_in_slack(question: str) -> tuple[set[str], int]:
        before, since = set(history_rows(db_url)), len(stub.messages(channel))
        serve.sender.slash_command("/reach", question, channel=channel, user=user)
        return before, since

    # An agent killed mid-round.
    before, since = ask_in_slack(SLOW_QUESTION)
    lab_cli(prefix, "fault", "agent-down", "--node", "node-3")
    rows = investigation_ends(db_url, before, SETTLE_S)
    lab_cli(prefix, "heal")
    poll(lambda: thread_told(stub, channel, since), 30)
    fault_row("fault: an agent killed mid-investigation", rows, thread_told(stub, channel, since), serve)

    # The API server stopped (SIGSTOP) while an investigation starts; continued after 20 s.
    api = load_state(prefix).processes["api-daemon"]  # type: ignore[union-attr]
    os.kill(api, signal.SIGSTOP)
    try:
        before, since = ask_in_slack(HEALTHY_QUESTION)
        stopped_rows = investigation_ends(db_url, before, 20)
    finally:
        os.kill(api, signal.SIGCONT)
    rows = investigation_ends(db_url, before, SETTLE_S)
    poll(lambda: thread_told(stub, channel, since), 30)
    running_while_stopped = sum(1 for s, _, _ in stopped_rows.values() if s == "running")
    fault_row(
        "fault: the API server stopped mid-investigation (20 s)",
        rows,
        thread_told(stub, channel, since),
        serve,
        f"{running_while_stopped} still running while it was stopped",
    )

    # Slack answering 429, then 5xx-like outages.
    stub.rate_limit("chat.postMessage", times=2, retry_after=1)
    stub.rate_limit("chat.update", times=2, retry_after=1)
    before, since = ask_in_slack(HEALTHY_QUESTION)
    rows = investigation_ends(db_url, before, SETTLE_S)
    poll(lambda: thread_told(stub, channel, since), 30)
    fault_row("fault: Slack answers 429 (twice per method)", rows, thread_told(stub, channel, since), serve)

    for method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
        stub.fail(method, "internal_error", times=2)
    before, since = ask_in_slack(HEALTHY_QUESTION)
    rows = investigation_ends(db_url, before, SETTLE_S)
    poll(lambda: thread_told(stub, channel, since), 30)
    fault_row("fault: Slack answers errors (twice per method)", rows, thread_told(stub, channel, since), serve)

    # SIGTERM to serve mid-investigation.
    before, since = ask_in_slack(SLOW_QUESTION)
    poll(lambda: any(s == "running" for k, (s, _, _) in history_rows(db_url).items() if k not in before), 60, 0.1)
    code = serve.stop(signal.SIGTERM)
    rows = {k: v for k, v in history_rows(db_url).items() if k not in before}
    fault_row("fault: SIGTERM to serve mid-investigation", rows, thread_told(stub, channel, since), None, f"serve exited {code}")
    serve.start(serve.secret)


def database_faults(config: str, prefix: str, stub: SlackStub, channel: str, user: str) -> None:
    # PostgreSQL unreachable: serve and ask still answer.
    unreachable = "postgresql://kubereach@127.0.0.1:9/history?connect_timeout=3"
    serve = Serve(config, unreachable, stub).start()
    try:
        since = len(stub.messages(channel))
        serve.sender.slash_command("/reach", HEALTHY_QUESTION, channel=channel, user=user)
        told = poll(lambda: thread_told(stub, channel, since), SETTLE_S, 0.5)
        row(
            "fault: database unreachable (serve)",
            tried=1,
            crashed=0 if serve.alive else 1,
            lost=0 if told else 1,
            note=f"serve started; verdict in the thread: {told}",
        )
    finally:
        serve.stop()
    env = {**os.environ, "KUBEREACH_DATABASE_URL": unreachable}
    proc = subprocess.run(
        [KUBEREACH, "--config", config, "ask", HEALTHY_QUESTION, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    answered = proc.returncode == 0 and '"verdict"' in proc.stdout
    row(
        "fault: database unreachable (ask)",
        tried=1,
        crashed=0 if proc.returncode in (0, 1, 2) else 1,
        lost=0 if answered else 1,
        note=f"exit {proc.returncode}; says 'history unavailable': {'history unavailable' in proc.stderr}",
    )
    # SQLite on a disk that is full: ask answers, writes nothing, crashes nothing.
    with tempfile.TemporaryDirectory(prefix="krel-full-") as tmp:
        url = f"sqlite:///{tmp}/h.db"
        script = (
            f"mount -t tmpfs -o size=1m krel-full {tmp}; "
            f"{sys.executable} -c {shlex.quote(f'from bot.history.recorder import HistoryRecorder as H; H.from_url({url!r})')}; "
            f"dd if=/dev/zero of={tmp}/fill bs=64k >/dev/null 2>&1 || true; "
            f"KUBEREACH_DATABASE_URL={url} {KUBEREACH} --config {config} ask {shlex.quote(HEALTHY_QUESTION)} --json; "
            f"echo rc=$?"
        )
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    answered = '"verdict"' in proc.stdout and "rc=0" in proc.stdout
    crashed = "rc=0" not in proc.stdout or "Traceback" in proc.stderr or "Bus error" in proc.stderr
    row(
        "fault: database full (SQLite on a full disk, ask)",
        tried=1,
        crashed=1 if crashed else 0,
        lost=0 if answered else 1,
        note=f"answered: {answered}; says 'history unavailable': {'history unavailable' in proc.stderr}"
        + ("" if answered else f"; stdout {proc.stdout[-300:]!r} stderr {proc.stderr[-500:]!r}"),
    )


# ------------------------------------------------------------------------------ load


def load_serve(serve: Serve, stub: SlackStub, channel: str, user: str, db_url: str, count: int) -> None:
    before = set(history_rows(db_url))
    with ThreadPoolExecutor(max_workers=count) as pool:
        acks = list(
            pool.map(lambda _: serve.sender.slash_command("/reach", HEALTHY_QUESTION, channel=channel, user=user), range(count))
        )
    poll(
        lambda: (
            len({k for k in history_rows(db_url) if k not in before}) >= count
            and all(s != "running" for k, (s, _, _) in history_rows(db_url).items() if k not in before)
        ),
        600,
        1.0,
    )
    rows = {k: v for k, v in history_rows(db_url).items() if k not in before}
    durations = [d for _, _, d in rows.values() if d is not None]
    verdicts = Counter(v for _, v, _ in rows.values())
    row(
        f"{count} concurrent investigations through serve",
        tried=count,
        crashed=sum(1 for a in acks if a.status >= 500) + (0 if serve.alive else 1),
        lost=max(0, count - len(rows)),
        stuck=sum(1 for s, _, _ in rows.values() if s == "running"),
        note=f"p50 {pct(durations, 50) / 1000:.1f} s, p95 {pct(durations, 95) / 1000:.1f} s; ack p95 {pct([a.elapsed for a in acks], 95):.2f} s; "
        f"wrong verdicts {sum(n for v, n in verdicts.items() if v not in NOT_FAULTS)}; verdicts {dict(verdicts)}",
    )


def load_ask(config: str, count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="krel-ask-") as tmp:
        url = f"sqlite:///{tmp}/history.db"
        env = {**os.environ, "KUBEREACH_DATABASE_URL": url}
        env.pop("DATABASE_URL", None)
        subprocess.run([KUBEREACH, "search", "x"], env=env, capture_output=True, check=False, timeout=120)
        started = time.monotonic()
        procs = [
            (
                time.monotonic(),
                subprocess.Popen(
                    [KUBEREACH, "--config", config, "ask", HEALTHY_QUESTION, "--json"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                ),
            )
            for _ in range(count)
        ]
        walls, ids, verdicts, crashed = [], [], Counter(), 0
        for t0, p in procs:
            out, _ = p.communicate(timeout=900)
            walls.append(time.monotonic() - t0)
            if p.returncode != 0:
                crashed += 1
                continue
            doc = json.loads(out)
            ids.append(doc["id"])
            verdicts[doc["verdict"]["code"]] += 1
        rows = history_rows(url)
        row(
            f"{count} concurrent `kubereach ask` (SQLite history)",
            tried=count,
            crashed=crashed,
            lost=len([i for i in ids if i not in rows]) + crashed,
            stuck=sum(1 for s, _, _ in rows.values() if s == "running"),
            note=f"p50 {pct(walls, 50):.1f} s, p95 {pct(walls, 95):.1f} s (wall, {time.monotonic() - started:.0f} s in all); "
            f"wrong verdicts {sum(n for v, n in verdicts.items() if v not in NOT_FAULTS)}; verdicts {dict(verdicts)}",
        )


# ------------------------------------------------------------------------------ main


def print_table() -> None:
    print("\n| attack or fault | tried | rejected | crashed | lost | stuck | notes |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in ROWS:
        note = r.note.replace("|", "/")
        print(f"| {r.name} | {r.tried} | {r.rejected} | {r.crashed} | {r.lost} | {r.stuck} | {note} |")


@contextlib.contextmanager
def lab(prefix: str, keep: bool) -> Iterator[dict[str, Any]]:
    if load_state(prefix) is not None:  # a lab already up under this prefix: use it, leave it up
        yield json.loads(lab_cli(prefix, "status", "--json").stdout)
        return
    try:
        lab_cli(prefix, "up")
        yield json.loads(lab_cli(prefix, "status", "--json").stdout)
    finally:
        if not keep:
            lab_cli(prefix, "down", check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefix", default="krel")
    parser.add_argument("--quick", action="store_true", help="small counts (a few minutes)")
    parser.add_argument("--slack", type=int, default=20, help="requests per Slack attack")
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--rpcs", type=int, default=2_000)
    parser.add_argument("--concurrent-rpcs", type=int, default=200)
    parser.add_argument("--investigations", type=int, default=50, help="concurrent investigations through serve and through ask")
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the fuzzed questions at most")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--keep-logs", action="store_true", help="keep the serve processes' logs (printed at the end)")
    parser.add_argument("--skip", action="append", default=[], choices=["slack", "questions", "rpcs", "faults", "db", "load"])
    args = parser.parse_args(argv)
    if args.quick:
        args.slack, args.questions, args.rpcs, args.concurrent_rpcs, args.investigations = 7, 1000, 300, 100, 10
    if os.geteuid() != 0:
        print("bench/reliability.py needs root (it builds the lab)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    with lab(args.prefix, args.keep_lab) as status, SlackStub() as stub, tempfile.TemporaryDirectory(prefix="krel-") as tmp:
        config = status["config"]
        nodes = [n["name"] for n in status["nodes"]]
        before = node_snapshot(args.prefix, nodes)
        channel = stub.state.add_channel("incidents").id
        user = stub.state.add_user("oncall").id
        db_url = f"sqlite:///{tmp}/history.db"
        serve = Serve(config, db_url, stub, grace=2).start()
        try:
            if "slack" not in args.skip:
                print("Slack attacks…", flush=True)
                slack_attacks(serve, stub, channel, user, args.slack, db_url)
            if "questions" not in args.skip:
                print("fuzzed questions…", flush=True)
                fuzz_questions(config, args.questions, args.time_limit)
            if "rpcs" not in args.skip:
                print("fuzzed RPCs…", flush=True)
                fuzz_rpcs(config, args.prefix, "node-1", args.rpcs, args.concurrent_rpcs, args.seed)
            if "faults" not in args.skip:
                print("faults…", flush=True)
                faults(config, args.prefix, stub, serve, channel, user, db_url)
            if "db" not in args.skip:
                print("database faults…", flush=True)
                database_faults(config, args.prefix, stub, channel, user)
            if "load" not in args.skip:
                print("load…", flush=True)
                load_serve(serve, stub, channel, user, db_url, args.investigations)
                load_ask(config, args.investigations)
        finally:
            serve.stop()
        stuck = sum(1 for s, _, _ in history_rows(db_url).values() if s == "running")
        after = node_snapshot(args.prefix, nodes)
        changed = [n for n in nodes if before[n] != after[n]]
        row(
            "the agents' read-only promise (addresses, routes, rules, nft ruleset, sysctls, promiscuity, packet sockets per node)",
            tried=len(nodes),
            lost=len(changed),
            note=f"changed: {changed or 'none'}",
        )
        row("serve's history at the end", tried=len(history_rows(db_url)), stuck=stuck, note="investigations left running")
    print_table()
    print(f"\n{time.monotonic() - t0:.0f} s in all", flush=True)
    for log in SERVE_LOGS:
        if args.keep_logs:
            print(f"serve log: {log}")
        else:
            log.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
