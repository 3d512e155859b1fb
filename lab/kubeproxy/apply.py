"""Write rendered kube-proxy rules into a named network namespace.

Every command is a fixed argument vector run through `ip netns exec NS ...`; rule text travels on
stdin (`iptables-restore --noflush`, `nft -f -`), never in argv. The jump rules of iptables mode
are ensured the way kube-proxy's EnsureChain / EnsureRule do it, before the restore: `iptables -N`
(an existing chain is fine), `iptables -C` to check, `iptables -I` to insert at the top when
missing, so repeated syncs never duplicate them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lab.errors import LabError
from lab.kubeproxy.iptables import IptablesRuleset, nat_chains_from_save, render_iptables
from lab.kubeproxy.model import NodeContext
from lab.kubeproxy.nftables import NftablesRuleset, render_nftables
from nodeagent.netns import validate_netns_name

COMMAND_TIMEOUT_S = 30.0


class RuleApplyError(LabError):
    """A rules tool failed in the node namespace; `stderr` is what the tool printed."""

    def __init__(self, tool: str, netns: str, stderr: str) -> None:
        super().__init__(
            f"{tool} failed in network namespace {netns}: {stderr.strip() or 'no error output'}",
            hint="check that the namespace exists and that the rendered rules are valid for this kernel",
        )
        self.tool = tool
        self.netns = netns
        self.stderr = stderr


def _run(netns: str, argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    name = validate_netns_name(netns)
    full = ["ip", "netns", "exec", name, *argv]
    try:
        return subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise RuleApplyError(argv[0], netns, f"command not found: {exc.filename}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RuleApplyError(argv[0], netns, f"timed out after {COMMAND_TIMEOUT_S:.0f}s") from exc


def _checked(netns: str, argv: Sequence[str], stdin: str | None = None) -> str:
    done = _run(netns, argv, stdin)
    if done.returncode != 0:
        raise RuleApplyError(argv[0], netns, done.stderr or done.stdout)
    return done.stdout


def iptables_nat_chains(netns: str) -> frozenset[str]:
    """The chains of the nat table in `netns` (from `iptables-save -t nat`)."""
    return nat_chains_from_save(_checked(netns, ["iptables-save", "-t", "nat"]))


def _ensure_chain(netns: str, table: str, chain: str) -> None:
    done = _run(netns, ["iptables", "-w", "5", "-t", table, "-N", chain])
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise RuleApplyError("iptables", netns, done.stderr or done.stdout)


def apply_iptables(netns: str, ruleset: IptablesRuleset) -> None:
    """Ensure the built-in-chain jumps (and their target chains), then `iptables-restore --noflush`.

    The order is kube-proxy's: jumps first, so by the time any service chain is visible the
    traffic already flows through it.
    """
    for jump in ruleset.jumps:
        _ensure_chain(netns, jump.table, jump.rule[-1])
        check = _run(netns, ["iptables", "-w", "5", "-t", jump.table, "-C", jump.chain, *jump.rule])
        if check.returncode == 0:
            continue
        _checked(netns, ["iptables", "-w", "5", "-t", jump.table, "-I", jump.chain, *jump.rule])
    _checked(netns, ["iptables-restore", "--noflush"], ruleset.restore_input)


def apply_nftables(netns: str, ruleset: NftablesRuleset) -> None:
    """Load `ruleset` with `nft -f -` (one atomic transaction)."""
    _checked(netns, ["nft", "-f", "-"], ruleset.script)


def sync_iptables(
    netns: str,
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
) -> IptablesRuleset:
    """One full iptables-mode sync: read the nat chains, render (deleting stale chains), apply."""
    ruleset = render_iptables(services, endpoint_slices, node, iptables_nat_chains(netns))
    apply_iptables(netns, ruleset)
    return ruleset


def sync_nftables(
    netns: str,
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
) -> NftablesRuleset:
    """One full nftables-mode sync: render and apply."""
    ruleset = render_nftables(services, endpoint_slices, node)
    apply_nftables(netns, ruleset)
    return ruleset
