"""Write compiled policy chains into a node's network namespace with iptables-restore.

The apply step is the only part that looks at the node's current table: it reads
`iptables-save -t filter` to find chains of ours that the new script no longer declares (they are
flushed and deleted in the same transaction) and whether FORWARD and INPUT already jump to our top
chains (the jump is inserted at position 1 only when missing, so applying twice leaves one jump).
Every command is a fixed argument vector run through `ip netns exec`; the script goes on stdin.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from lab.errors import LabError
from lab.netpol.compiler import BUILTIN_JUMPS, MANAGED_CHAIN_PREFIXES

COMMAND_TIMEOUT_S = 30.0
_NETNS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class NetworkPolicyApplyError(LabError):
    """iptables in a node namespace refused or failed to run; the message carries its stderr."""


@dataclass(frozen=True)
class FilterTableState:
    """What the node's filter table holds now, as far as policy enforcement cares."""

    chains: frozenset[str]
    """Every chain in the filter table (built-in and user-defined)."""
    jump_counts: tuple[tuple[str, int], ...]
    """(built-in chain, number of plain `-j <our top chain>` rules in it)."""

    def jumps(self, builtin: str) -> int:
        """How many plain jumps from `builtin` to our top chain exist."""
        return dict(self.jump_counts).get(builtin, 0)

    @property
    def managed_chains(self) -> frozenset[str]:
        """The chains that belong to policy enforcement."""
        return frozenset(c for c in self.chains if c.startswith(MANAGED_CHAIN_PREFIXES))


def _checked_name(netns_name: str) -> str:
    if not _NETNS_NAME.fullmatch(netns_name):
        raise NetworkPolicyApplyError(f"{netns_name[:64]!r} is not a network namespace name; pass the node's netns")
    return netns_name


def _run(netns_name: str, command: list[str], stdin: str | None = None) -> str:
    argv = ["ip", "netns", "exec", _checked_name(netns_name), *command]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise NetworkPolicyApplyError(f"cannot run `ip`: {exc}; install iproute2") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetworkPolicyApplyError(
            f"`{command[0]}` in namespace {netns_name} did not finish in {COMMAND_TIMEOUT_S:.0f}s"
        ) from exc
    if proc.returncode != 0:
        raise NetworkPolicyApplyError(
            f"`{' '.join(command)}` in namespace {netns_name} failed (exit {proc.returncode}): "
            f"{proc.stderr.strip() or proc.stdout.strip()}",
            hint="check that the node namespace exists and the script came from render_policy_rules",
        )
    return proc.stdout


def parse_filter_table(saved: str) -> FilterTableState:
    """Read chain names and our FORWARD/INPUT jumps from `iptables-save -t filter` output."""
    chains: set[str] = set()
    counts = dict.fromkeys((builtin for builtin, _ in BUILTIN_JUMPS), 0)
    in_filter = False
    for line in saved.splitlines():
        if line.startswith("*"):
            in_filter = line == "*filter"
        elif in_filter and line.startswith(":"):
            chains.add(line[1:].split()[0])
        elif in_filter and line.startswith("-A "):
            for builtin, target in BUILTIN_JUMPS:
                if line == f"-A {builtin} -j {target}":
                    counts[builtin] += 1
    return FilterTableState(frozenset(chains), tuple(sorted(counts.items())))


def read_filter_table(netns_name: str) -> FilterTableState:
    """The current filter table state of a node namespace."""
    return parse_filter_table(_run(netns_name, ["iptables-save", "-t", "filter"]))


def _declared_chains(script: str) -> set[str]:
    return {line[1:].split()[0] for line in script.splitlines() if line.startswith(":")}


def complete_script(script: str, state: FilterTableState) -> str:
    """Add to a rendered script the deletion of stale chains of ours and the missing jumps."""
    lines = script.rstrip("\n").splitlines()
    if not lines or lines[0] != "*filter" or lines[-1] != "COMMIT":
        raise NetworkPolicyApplyError(
            "the policy script must start with *filter and end with COMMIT; render it with render_policy_rules"
        )
    declared = _declared_chains(script)
    stale = sorted(state.managed_chains - declared)
    tail = [f"-X {name}" for name in stale]
    for builtin, target in BUILTIN_JUMPS:
        if target not in declared:
            continue
        present = state.jumps(builtin)
        if present == 0:
            tail.append(f"-I {builtin} 1 -j {target}")
        tail.extend(f"-D {builtin} -j {target}" for _ in range(present - 1))
    head = [f":{name} - [0:0]" for name in stale]
    return "\n".join([lines[0], *head, *lines[1:-1], *tail, "COMMIT"]) + "\n"


def apply_policy_rules(netns_name: str, script: str) -> None:
    """Load a script from `render_policy_rules` into the filter table of namespace `netns_name`.

    Runs `ip netns exec NS iptables-restore --noflush` with the script on stdin. Chains of ours the
    script no longer declares are deleted; FORWARD and INPUT get exactly one jump to our top chains.
    Raises `NetworkPolicyApplyError` (with iptables' stderr) when iptables fails.
    """
    full = complete_script(script, read_filter_table(netns_name))
    _run(netns_name, ["iptables-restore", "--noflush"], stdin=full)


def remove_policy_rules(netns_name: str) -> None:
    """Remove every chain and jump of policy enforcement from a node namespace (safe to repeat)."""
    state = read_filter_table(netns_name)
    managed = sorted(state.managed_chains)
    if not managed:
        return
    lines = ["*filter", *(f":{name} - [0:0]" for name in managed)]
    for builtin, target in BUILTIN_JUMPS:
        lines.extend(f"-D {builtin} -j {target}" for _ in range(state.jumps(builtin)))
    lines.extend(f"-X {name}" for name in managed)
    lines.append("COMMIT")
    _run(netns_name, ["iptables-restore", "--noflush"], stdin="\n".join(lines) + "\n")
