"""The lab's hands on the kernel: `ip`, `bridge`, sysctls and iptables in lab namespaces.

Every command is a fixed argument vector; batches go to `ip -batch -` on stdin so that building a
namespace is one process, not dozens. Nothing here touches the root namespace's network state:
commands always name a lab namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError
from nodeagent.netns import netns_path, run_in_netns

TOOL_PACKAGES: Mapping[str, str] = {
    "ip": "iproute2",
    "bridge": "iproute2",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "iptables-restore": "iptables",
    "nft": "nftables",
    "conntrack": "conntrack",
    "nsenter": "util-linux",
}
NETNS_DIR = Path("/var/run/netns")


def require_root() -> None:
    """Fail with a clear message when not running as root."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab builds network namespaces and needs root",
            hint="run it as root, e.g. `sudo .venv/bin/kubereach lab up`, or use `sudo bash scripts/setup.sh demo`",
        )


def require_tools(tools: Iterable[str] = TOOL_PACKAGES) -> None:
    """Fail naming the Debian package of the first missing system tool."""
    for tool in tools:
        if shutil.which(tool) is None:
            package = TOOL_PACKAGES.get(tool, tool)
            raise LabError(
                f"the system tool `{tool}` is missing",
                hint=f"install Debian's package: apt-get install -y {package}",
            )


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed."""

    stdout: str
    stderr: str
    returncode: int


def run(argv: list[str], *, stdin: str | None = None, check: bool = True, timeout: float = 60.0) -> CommandResult:
    """Run a fixed argument vector; on failure raise LabError with the tool's own words."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        require_tools([argv[0]])
        raise LabError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv[:4])} …` did not finish within {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"`{' '.join(argv[:6])}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return CommandResult(proc.stdout, proc.stderr, proc.returncode)


def ip_batch(netns: str | None, commands: list[str]) -> None:
    """Run `ip` commands as one batch, inside `netns` (None only for `netns add/del` lines)."""
    if not commands:
        return
    argv = ["ip", "-batch", "-"] if netns is None else ["ip", "-n", netns, "-batch", "-"]
    run(argv, stdin="\n".join(commands) + "\n")


def bridge_batch(netns: str, commands: list[str]) -> None:
    """Run `bridge` commands (fdb entries) as one batch inside `netns`."""
    if commands:
        run(["bridge", "-n", netns, "-batch", "-"], stdin="\n".join(commands) + "\n")


def write_sysctls(netns: str, values: Mapping[str, str | int]) -> None:
    """Write net sysctls inside `netns`.

    Keys are written as sysctl(8) writes them: dots separate levels and a dot inside an interface
    name is written as a slash ("net.ipv4.conf.flannel/1.rp_filter").
    """

    def write() -> None:
        for key, value in values.items():
            Path("/proc/sys", *(part.replace("/", ".") for part in key.split("."))).write_text(f"{value}\n")

    run_in_netns(netns_path(netns), write)


def read_sysctl(netns: str, key: str) -> str:
    """Read one net sysctl inside `netns`."""
    path = Path("/proc/sys", *(part.replace("/", ".") for part in key.split(".")))
    return run_in_netns(netns_path(netns), lambda: path.read_text().strip())


def netns_exists(name: str) -> bool:
    """True when /var/run/netns/NAME exists."""
    return (NETNS_DIR / name).exists()


def list_netns(prefix: str) -> list[str]:
    """The lab's namespaces: those whose name starts with `PREFIX-`."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))


def exec_in(netns: str, argv: list[str], *, stdin: str | None = None, check: bool = True, timeout: float = 60.0) -> CommandResult:
    """Run a tool inside a lab namespace (`ip netns exec NS …`)."""
    return run(["ip", "netns", "exec", netns, *argv], stdin=stdin, check=check, timeout=timeout)
