"""Many real node agents at once, for fan-out measurements: `agent_swarm(prefix, count)`.

Each agent is a `python -m nodeagent` process (what `kubereach-agent` runs) with its own mTLS
identity (`kubereach-agent.<node>`, issued by a CA made for the swarm), its own port on 127.0.0.1
(from the kernel) and a plain namespace of its own prefix as its node's namespace (several agents
share one: `<prefix>-swarm-N`, with only `lo` in it). Everything carries the prefix and lives in the
prefix's state directory, so `kubereach lab --prefix P down` removes it after a crash too; the context
manager stops the processes and deletes the namespaces and files in `finally`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lab import kernel, processes
from lab.certs import generate_pki
from lab.errors import LabError
from lab.state import STATE_ROOT, state_dir

READY_DEADLINE_S = 180.0
"""How long the whole swarm may take to listen (100 interpreters start on 2 shared cores)."""


@dataclass(frozen=True)
class BotIdentity:
    """The client side of the swarm's mTLS: the CA that signed the agents and the bot's certificate."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class SwarmAgent:
    """One agent process: the node it speaks for, its namespace, its process and its address."""

    node: str
    netns: str
    process: subprocess.Popen[bytes]
    address: str


@dataclass
class Swarm:
    """The running agents (node → agent) and how to reach them."""

    directory: Path
    bot: BotIdentity
    agents: dict[str, SwarmAgent] = field(default_factory=dict)

    def addresses(self) -> dict[str, str]:
        """node → 127.0.0.1:PORT of every agent (dead ones included: they are still the fleet's)."""
        return {node: agent.address for node, agent in self.agents.items()}

    def kill(self, node: str) -> None:
        """SIGKILL one agent and reap it: its sockets are closed by the kernel, as when a node dies."""
        agent = self.agents[node]
        agent.process.send_signal(signal.SIGKILL)
        agent.process.wait()

    def pause(self, node: str) -> None:
        """SIGSTOP one agent: its sockets stay open and nothing answers (a hung agent)."""
        self.agents[node].process.send_signal(signal.SIGSTOP)

    def resume(self, node: str) -> None:
        """SIGCONT a paused agent."""
        self.agents[node].process.send_signal(signal.SIGCONT)

    def restart(self, nodes: list[str], deadline_s: float = READY_DEADLINE_S) -> None:
        """Start dead agents again with the same identity (a new port: the caller retargets its fleet)."""
        for node in nodes:
            old = self.agents[node]
            self.agents[node] = _spawn(self.directory, node, old.netns)
        _wait_listening(self.directory, nodes, self.agents, deadline_s)

    def rss_mib(self) -> float:
        """Sum of the live agents' resident memory (VmRSS), MiB."""
        total_kib = 0
        for agent in self.agents.values():
            try:
                status = Path(f"/proc/{agent.process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        return total_kib / 1024


def _spawn(directory: Path, node: str, netns: str) -> SwarmAgent:
    port_file = directory / "agents" / f"{node}.port"
    port_file.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "nodeagent",
        "--node", node,
        "--listen", "127.0.0.1:0",
        "--host-netns", netns,
        "--tls-cert", str(directory / "pki" / f"agent-{node}.pem"),
        "--tls-key", str(directory / "pki" / f"agent-{node}-key.pem"),
        "--tls-client-ca", str(directory / "pki" / "ca.pem"),
        "--port-file", str(port_file),
        "--log-level", "WARNING",
    ]  # fmt: skip
    with (directory / "logs" / f"agent-{node}.log").open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return SwarmAgent(node, netns, proc, "")


def _wait_listening(directory: Path, nodes: list[str], agents: dict[str, SwarmAgent], deadline_s: float) -> None:
    """Wait for each agent's port file (written once it listens); fail with the log of one that died."""
    end = time.monotonic() + deadline_s
    waiting = set(nodes)
    while waiting:
        for node in sorted(waiting):
            agent = agents[node]
            if agent.process.poll() is not None:
                log = directory / "logs" / f"agent-{node}.log"
                raise LabError(f"agent {node} exited while starting: {processes.last_log_line(log)}")
            try:
                port = int((directory / "agents" / f"{node}.port").read_text())
            except (OSError, ValueError):
                continue
            agent.address = f"127.0.0.1:{port}"
            waiting.discard(node)
        if waiting and time.monotonic() > end:
            raise LabError(f"{len(waiting)} agents did not listen within {deadline_s:.0f} s (e.g. {min(waiting)})")
        if waiting:
            time.sleep(0.1)


@contextmanager
def agent_swarm(
    prefix: str, count: int, per_netns: int = 25, root: Path = STATE_ROOT, deadline_s: float = READY_DEADLINE_S
) -> Iterator[Swarm]:
    """`count` agents (`swarm-0` … `swarm-N`), `per_netns` to a namespace; all of it removed in finally."""
    kernel.require_root()
    directory = state_dir(prefix, root)
    if directory.exists() or kernel.list_netns(prefix):
        raise LabError(
            f"prefix {prefix!r} is in use (a lab or a swarm): pick another or run `kubereach lab --prefix {prefix} down`"
        )
    nodes = [f"swarm-{i}" for i in range(count)]
    namespaces = [f"{prefix}-swarm-{i}" for i in range((count + per_netns - 1) // per_netns)]
    swarm = Swarm(
        directory, BotIdentity(directory / "pki" / "ca.pem", directory / "pki" / "bot.pem", directory / "pki" / "bot-key.pem")
    )
    try:
        directory.mkdir(parents=True, mode=0o700)
        (directory / "agents").mkdir()
        (directory / "logs").mkdir()
        generate_pki(directory / "pki", nodes)
        for name in namespaces:
            kernel.run(["ip", "netns", "add", name])
        for i, node in enumerate(nodes):
            swarm.agents[node] = _spawn(directory, node, namespaces[i // per_netns])
        _wait_listening(directory, nodes, swarm.agents, deadline_s)
        yield swarm
    finally:
        for agent in swarm.agents.values():
            if agent.process.poll() is None:
                agent.process.send_signal(signal.SIGCONT)
                agent.process.send_signal(signal.SIGKILL)
            agent.process.wait()
        for name in namespaces:
            if kernel.netns_exists(name):
                kernel.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(directory, ignore_errors=True)
