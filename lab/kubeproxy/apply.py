"""Write rendered kube-proxy rules into a named network namespace.

Every command is a fixed argument vector run through `ip netns exec NS ...`; rule text travels on
stdin (`iptables-restore --noflush`, `nft -f -`), never in argv. The jump rules of iptables mode
are ensured the way kube-proxy's EnsureChain / EnsureRule do it, before the restore: `iptables -N`
(an existing chain is fine), `iptables -C` to check, `iptables -I` to insert at the top when
missing, so repeated syncs never duplicate them.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
import struct
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lab.errors import LabError
from lab.kubeproxy.iptables import CANARY, NFACCT_INVALID, IptablesRuleset, nat_chains_from_save, render_iptables
from lab.kubeproxy.model import NodeContext
from lab.kubeproxy.nftables import NftablesRuleset, render_nftables
from nodeagent.netns import netns_path, socket_in_netns, validate_netns_name

COMMAND_TIMEOUT_S = 30.0
_NETLINK_NETFILTER = 12
_NFNL_SUBSYS_ACCT = 7
_NFNL_MSG_ACCT_NEW = 0
_NFACCT_NAME = 1
_NLMSG_ERROR = 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_CREATE = 0x1, 0x4, 0x400


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


def _ensure_chain(netns: str, tool: str, table: str, chain: str) -> None:
    done = _run(netns, [tool, "-w", "5", "-t", table, "-N", chain])
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise RuleApplyError(tool, netns, done.stderr or done.stdout)


def ensure_nfacct_counter(netns: str, name: str = NFACCT_INVALID) -> bool:
    """Create the nfacct object `name` in `netns` (nfnetlink_acct) unless it exists.

    True when the object is there afterwards; False when the kernel has no nfacct support (then
    kube-proxy, too, writes its invalid-state drop without the counter).
    """
    payload = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(payload), _NFACCT_NAME) + payload
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
    header = struct.pack(
        "=IHHII",
        16 + len(body),
        (_NFNL_SUBSYS_ACCT << 8) | _NFNL_MSG_ACCT_NEW,
        _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE,
        1,
        0,
    )
    try:
        sock = socket_in_netns(netns_path(validate_netns_name(netns)), socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
    except OSError:
        return False
    with sock:
        sock.settimeout(COMMAND_TIMEOUT_S)
        try:
            sock.send(header + body)
            answer = sock.recv(4096)
        except OSError:
            return False
    if len(answer) < 20 or struct.unpack_from("=H", answer, 4)[0] != _NLMSG_ERROR:
        return False
    code = -struct.unpack_from("=i", answer, 16)[0]
    # EBUSY: an object of that name exists (created by an earlier sync) and is kept with its counts.
    return code in (0, errno.EBUSY, errno.EEXIST)


def _apply_family(netns: str, tool: str, ruleset: IptablesRuleset, restore_input: str) -> None:
    for table in ruleset.canary_tables:
        _ensure_chain(netns, tool, table, CANARY)
    for jump in ruleset.jumps:
        _ensure_chain(netns, tool, jump.table, jump.rule[-1])
        check = _run(netns, [tool, "-w", "5", "-t", jump.table, "-C", jump.chain, *jump.rule])
        if check.returncode == 0:
            continue
        _checked(netns, [tool, "-w", "5", "-t", jump.table, "-I", jump.chain, *jump.rule])
    _checked(netns, [f"{tool}-restore", "--noflush"], restore_input)


def apply_iptables(netns: str, ruleset: IptablesRuleset) -> None:
    """Set kube-proxy's sysctls, ensure the canary chains and the built-in-chain jumps (and their
    target chains), then `iptables-restore --noflush`; the same with ip6tables for the IPv6 side.

    The order is kube-proxy's: jumps first, so by the time any service chain is visible the
    traffic already flows through it.
    """
    for key, value in ruleset.sysctls:
        _checked(netns, ["sysctl", "-qw", f"{key}={value}"])
    _apply_family(netns, "iptables", ruleset, ruleset.restore_input)
    if ruleset.restore_input6 is not None:
        _apply_family(netns, "ip6tables", ruleset, ruleset.restore_input6)


def apply_nftables(netns: str, ruleset: NftablesRuleset) -> None:
    """Load `ruleset` with `nft -f -` (one atomic transaction)."""
    _checked(netns, ["nft", "-f", "-"], ruleset.script)


def sync_iptables(
    netns: str,
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
) -> IptablesRuleset:
    """One full iptables-mode sync: read the nat chains, render (deleting stale chains), apply.

    The nfacct counter of the invalid-state drop is used when it can be created in `netns`.
    """
    if not node.nfacct and ensure_nfacct_counter(netns):
        node = dataclasses.replace(node, nfacct=True)
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
