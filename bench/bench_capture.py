"""The agent's CapturePackets on an interface carrying a steady UDP flood: the agent process's CPU time
and RSS next to `tcpdump -w /dev/null` on the same interface and the same traffic, in the same run.

    sudo .venv/bin/python bench/bench_capture.py [--seconds 3] [--pps 20000]

Two throwaway namespaces `kb-capsrc-…` and `kb-capdst-…` joined by a veth pair; a sender in the first
floods UDP at --pps to a sink socket in the second (no reply, no ICMP). A real agent process
(`python -m nodeagent --host-netns kb-capdst-…`, plaintext on 127.0.0.1 for the bench) captures on the
receiving veth:

  background   the flood is not the probe (other ports): the kernel filter drops it, the agent
               idles until its deadline. tcpdump with the same filter, and tcpdump without one.
  matching     every flood packet matches the probe's filter (worst case): the capture keeps
               max_packets headers, then counts, and ends when the cap is reached. tcpdump with the
               same filter over the whole window.

CPU is utime+stime of the agent process over the RPC (from /proc/PID/stat) and of tcpdump's process
(wait4's rusage); RSS is the agent's VmRSS after the RPC and its VmHWM, tcpdump's ru_maxrss.
tcpdump is Debian's (`apt-get install tcpdump`); it runs with -s 256, the agent's snap length.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from benchkit import REPO, bench_netns

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc

SRC_IP, DST_IP, SINK_PORT, FLOOD_SPORT, PROBE_PORT = "10.253.0.1", "10.253.0.2", 9000, 41000, 42000
TICKS = os.sysconf("SC_CLK_TCK")

_FLOOD = """
import socket, sys, time
pps, port, sport = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", sport))
payload = b"f" * 64
burst = max(1, pps // 1000)
next_at = time.monotonic()
print("ready", flush=True)
while True:
    for _ in range(burst):
        sock.sendto(payload, (sys.argv[4], port))
    next_at += burst / pps
    delay = next_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def ns(name: str, *argv: str) -> None:
    subprocess.run(["ip", "-n", name, *argv], check=True, capture_output=True, timeout=30)


@contextmanager
def flooded_pair(pps: int) -> Iterator[tuple[str, str]]:
    """Two namespaces on a veth pair with a UDP flood from the first into a sink in the second."""
    with bench_netns("capsrc") as src, bench_netns("capdst") as dst:
        ns(src, "link", "add", "kbcs0", "type", "veth", "peer", "name", "kbcd0", "netns", dst)
        ns(src, "addr", "add", f"{SRC_IP}/24", "dev", "kbcs0")
        ns(dst, "addr", "add", f"{DST_IP}/24", "dev", "kbcd0")
        for name, dev in ((src, "kbcs0"), (dst, "kbcd0"), (src, "lo"), (dst, "lo")):
            ns(name, "link", "set", dev, "up")
        sink = subprocess.Popen(
            ["ip", "netns", "exec", dst, sys.executable, "-c",
             f"import socket,signal; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', {SINK_PORT})); "
             "print('ready', flush=True); signal.pause()"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        flood = subprocess.Popen(
            ["ip", "netns", "exec", src, sys.executable, "-c", _FLOOD, str(pps), str(SINK_PORT), str(FLOOD_SPORT), DST_IP],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            for proc in (sink, flood):
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield src, dst
        finally:
            for proc in (flood, sink):
                proc.kill()
                proc.wait(10)


@contextmanager
def agent_process(host_netns: str) -> Iterator[tuple[int, pb_grpc.NodeAgentServiceStub]]:
    """A real agent process for the namespace, plaintext on 127.0.0.1 (a bench: no certificates)."""
    with tempfile.TemporaryDirectory(prefix="kb-cap-") as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, "-m", "nodeagent", "--node", "kb-cap", "--listen", "127.0.0.1:0", "--insecure",
             "--host-netns", host_netns, "--port-file", str(port_file), "--log-level", "WARNING"],
            cwd=REPO, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the agent did not start")
                time.sleep(0.05)
            channel = grpc.insecure_channel(f"127.0.0.1:{port_file.read_text().strip()}")
            grpc.channel_ready_future(channel).result(timeout=30)
            yield proc.pid, pb_grpc.NodeAgentServiceStub(channel)
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_mib(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def capture(stub: pb_grpc.NodeAgentServiceStub, port: int, seconds: float) -> pb.CaptureResult:
    start = pb.CaptureStart(
        points=[pb.CapturePoint(interface="kbcd0")],
        match=pb.CaptureMatch(protocol=pb.PROTOCOL_UDP, addresses=[SRC_IP, DST_IP], port=port, icmp=True),
        max_duration_ms=int(seconds * 1000),
        max_packets=1000,
    )
    responses = stub.CapturePackets(iter([pb.CapturePacketsRequest(start=start)]), timeout=seconds + 10)
    armed = next(responses)
    assert armed.WhichOneof("event") == "armed", armed
    return next(responses).result


def tcpdump(netns: str, seconds: float, expression: list[str]) -> tuple[float, float, str]:
    """tcpdump -w /dev/null on kbcd0 for `seconds`: its CPU seconds, peak RSS (MiB) and drop line."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "tcpdump", "-i", "kbcd0", "-s", "256", "-w", "/dev/null", *expression],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    timer = threading.Timer(seconds, proc.send_signal, (signal.SIGINT,))
    timer.start()
    _, _, usage = os.wait4(proc.pid, 0)
    timer.cancel()
    proc.returncode = 0
    stderr = proc.stderr.read() if proc.stderr else ""
    counts = " ".join(line.strip() for line in stderr.splitlines() if "packets" in line)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, counts


def line(label: str, cpu: float, rss: float, extra: str = "") -> None:
    print(f"  {label:<44} CPU {cpu * 1000:8.1f} ms   RSS {rss:6.1f} MiB   {extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="capture window (the agent allows 0.1-5)")
    parser.add_argument("--pps", type=int, default=20000, help="flood rate, packets per second")
    args = parser.parse_args()
    if shutil.which("tcpdump") is None:
        raise SystemExit("tcpdump is not installed: apt-get install tcpdump (Debian's), then run again")
    filter_for = ["udp", "port"]
    with flooded_pair(args.pps) as (_, dst), agent_process(dst) as (pid, stub):
        stub.GetNodeInfo(pb.GetNodeInfoRequest(), timeout=30)  # warm: imports and first netlink reads done
        idle_rss, _ = memory_mib(pid)
        print(f"flood: UDP {args.pps} packets/s on a veth, {args.seconds:.1f} s windows; agent idle RSS {idle_rss:.1f} MiB")
        for case, port in (("background", PROBE_PORT), ("matching", FLOOD_SPORT)):
            expression = [*filter_for, str(port), "and", "host", SRC_IP]
            before = cpu_seconds(pid)
            started = time.monotonic()
            result = capture(stub, port, args.seconds)
            wall = time.monotonic() - started
            cpu = cpu_seconds(pid) - before
            rss, hwm = memory_mib(pid)
            point = result.points[0]
            print(f"{case}:")
            line(
                "agent CapturePackets (kernel filter)", cpu, rss,
                f"VmHWM {hwm:.1f} MiB; ran {result.duration_ms:.0f} ms (RPC {wall * 1000:.0f} ms), ended: {result.reason}; "
                f"{point.packets} matched, {len(point.samples)} kept, {point.kernel_drops} kernel drops",
            )  # fmt: skip
            dump_cpu, dump_rss, counts = tcpdump(dst, args.seconds, expression)
            line(f"tcpdump -w /dev/null '{' '.join(expression)}'", dump_cpu, dump_rss, counts)
        dump_cpu, dump_rss, counts = tcpdump(dst, args.seconds, [])
        line("tcpdump -w /dev/null (no filter)", dump_cpu, dump_rss, counts)


if __name__ == "__main__":
    main()
