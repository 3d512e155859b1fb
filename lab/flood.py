"""A steady UDP flood between two lab namespaces, bounded in rate and time, for benchmarks that need an
interface carrying traffic (a capture's cost next to tcpdump's on the same packets).

    with udp_flood(src_netns, dst_netns, dst_ip, pps=20_000, seconds=10) as flood:
        ...                       # the traffic flows (both ends are up when the block starts)
        flood.wait()              # optional: until the sender's `seconds` are over
    flood.result                  # FloodResult(sent=…, received=…, seconds=…) once the block has ended

The sender and the sink are separate processes (`python -m lab.flood send|sink …` under `ip netns
exec`), so the flood's CPU is never counted as the caller's. The sender paces itself in 1 ms ticks;
the sink counts and discards what arrives (so no ICMP port-unreachable flows back). Both stop at
the deadline or when the block ends, whichever comes first. Only lab namespaces, only lab addresses:
the caller names both ends.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from lab.errors import LabError

MAX_PPS = 200_000
MAX_SECONDS = 120.0
MAX_SIZE = 1400
READY = "ready"
SO_RCVBUFFORCE = 33


@dataclass
class FloodResult:
    """What a flood did: datagrams sent and received, and for how long it ran."""

    sent: int = 0
    received: int = 0
    seconds: float = 0.0


@dataclass
class Flood:
    """A running flood; `result` is filled in when its block ends."""

    src_netns: str
    dst_netns: str
    dst_ip: str
    port: int
    pps: int
    size: int
    seconds: float
    result: FloodResult = field(default_factory=FloodResult)
    sender: subprocess.Popen[str] | None = None

    def wait(self) -> None:
        """Block until the sender has sent for its `seconds` (and a little grace)."""
        if self.sender is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.sender.wait(timeout=self.seconds + 5)


def _argv(netns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", netns, sys.executable, "-m", "lab.flood", *args]


def _finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, float]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    last = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(last[-1]) if last else {}


@contextlib.contextmanager
def udp_flood(
    src_netns: str,
    dst_netns: str,
    dst_ip: str,
    *,
    port: int = 9_999,
    pps: int = 20_000,
    size: int = 512,
    seconds: float = 30.0,
) -> Iterator[Flood]:
    """Flood `dst_ip:port` (a sink in `dst_netns`) from `src_netns` at `pps` datagrams of `size` bytes
    for at most `seconds`; stops both ends when the block ends."""
    if not (1 <= pps <= MAX_PPS and 0 < seconds <= MAX_SECONDS and 1 <= size <= MAX_SIZE and 1 <= port <= 65_535):
        raise LabError(
            f"a lab flood is bounded: 1-{MAX_PPS} pps, up to {MAX_SECONDS:.0f} s, 1-{MAX_SIZE} bytes, a port 1-65535",
            exit_code=2,
        )
    flood = Flood(src_netns, dst_netns, dst_ip, port, pps, size, seconds)
    sink = subprocess.Popen(_argv(dst_netns, "sink", str(port), str(seconds + 2)), stdout=subprocess.PIPE, text=True)
    sender: subprocess.Popen[str] | None = None
    try:
        assert sink.stdout is not None
        if sink.stdout.readline().strip() != READY:
            raise LabError(f"the flood's sink in {dst_netns} did not start")
        argv = _argv(src_netns, "send", dst_ip, str(port), str(pps), str(size), str(seconds))
        sender = flood.sender = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert sender.stdout is not None
        if sender.stdout.readline().strip() != READY:
            raise LabError(f"the flood's sender in {src_netns} did not start")
        yield flood
    finally:
        for proc in (sender, sink):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        sent = _finish(sender, 5) if sender is not None else {}
        got = _finish(sink, 5)
        flood.result = FloodResult(int(sent.get("sent", 0)), int(got.get("received", 0)), float(sent.get("seconds", 0.0)))


def _send(dst_ip: str, port: int, pps: int, size: int, seconds: float) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    payload = b"\0" * size
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((dst_ip, port))
        print(READY, flush=True)
        start = time.monotonic()
        while not stop:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = min(int(elapsed * pps) + 1, sent + max(1, pps // 200))  # behind: catch up in steps, keep the deadline
            while sent < due:
                try:
                    s.send(payload)
                except OSError:  # a full queue or an unreachable answer: count only what left
                    break
                sent += 1
            time.sleep(0.001)
        print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)


def _sink(port: int, seconds: float) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)  # a busy machine must not be counted as loss
        s.bind(("0.0.0.0", port))
        s.settimeout(0.1)
        print(READY, flush=True)
        end = time.monotonic() + seconds
        while not stop and time.monotonic() < end:
            try:
                s.recv(2048)
                received += 1
            except TimeoutError:
                continue
    print(json.dumps({"received": received}), flush=True)


def main(argv: list[str]) -> None:
    """`send DST_IP PORT PPS SIZE SECONDS` or `sink PORT SECONDS` (run by `udp_flood` inside a namespace)."""
    if argv[:1] == ["send"] and len(argv) == 6:
        _send(argv[1], int(argv[2]), min(int(argv[3]), MAX_PPS), min(int(argv[4]), MAX_SIZE), min(float(argv[5]), MAX_SECONDS))
    elif argv[:1] == ["sink"] and len(argv) == 3:
        _sink(int(argv[1]), min(float(argv[2]), MAX_SECONDS + 2))
    else:
        raise SystemExit("usage: python -m lab.flood send DST_IP PORT PPS SIZE SECONDS | sink PORT SECONDS")


if __name__ == "__main__":
    main(sys.argv[1:])
