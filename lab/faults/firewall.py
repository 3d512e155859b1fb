"""Host firewall faults: rules a node's own firewall holds, in the backends real nodes use.

Each writes real rules inside the node's namespace, the way they turn up on real nodes, and `heal`
removes exactly what it wrote:

- `nft-forward-drop`: a distro-style native nftables `table inet filter` whose forward base chain
  (policy accept) rejects traffic from and to the node's pod CIDR. iptables-nft's `iptables-save`
  does not show such a table.
- `forward-rule-drop`: an explicit iptables rule instead of a policy: FORWARD jumps to a user chain
  (`HOST-FIREWALL`, as firewall scripts add their own chains) that drops the node's pod CIDR.
- `legacy-forward-drop`: the same rule written with iptables-legacy (x_tables), invisible to
  iptables-nft; a node where an image picked the legacy backend.
- `input-drop`: a native nftables input base chain that drops the overlay's UDP port (a host
  firewall on the node allowing only what its owner listed); with host-gw, a prerouting base chain
  that drops what other nodes send to the node's pods. Packets reveal it (`ask --trace`).
- `output-drop`: a native nftables output base chain that rejects TCP the node itself sends to the
  cluster's pod network (an egress lockdown on the node), so the node cannot reach pods.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import kernel
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict
from lab.faults.underlay import overlay_port
from lab.plan import CLUSTER_CIDR

FIREWALL_CHAIN = "HOST-FIREWALL"


@dataclass(frozen=True)
class NftTableUndo(Undo):
    """A native nftables table a fault created on a node (deleted whole by `heal`)."""

    node: str
    family: str
    table: str


@dataclass(frozen=True)
class IptablesChainUndo(Undo):
    """A user chain a fault created and jumped to from a built-in chain, with the tool that wrote it."""

    node: str
    tool: str
    table: str
    builtin: str
    chain: str


def _nft(netns: str, ruleset: str) -> None:
    kernel.exec_in(netns, ["nft", "-f", "-"], stdin=ruleset)


def _heal_nft_table(ctx: FaultContext, undo: NftTableUndo) -> None:
    kernel.exec_in(ctx.plan.node(undo.node).netns, ["nft", "delete", "table", undo.family, undo.table], check=False)


def _inject_nft_forward(ctx: FaultContext, t: FaultTarget) -> tuple[str, NftTableUndo]:
    assert t.node is not None
    cidr = t.node.pod_cidr
    _nft(
        t.node.netns,
        "table inet filter {\n"
        "  chain forward {\n"
        "    type filter hook forward priority filter; policy accept;\n"
        f"    ip saddr {cidr} counter reject with icmpx admin-prohibited\n"
        f"    ip daddr {cidr} counter reject with icmpx admin-prohibited\n"
        "  }\n"
        "}\n",
    )
    said = f"nftables table inet filter on {t.node.name} rejects forwarded traffic from and to its pods ({cidr})"
    return said, NftTableUndo(t.node.name, "inet", "filter")


def _inject_chain_drop(tool: str, ctx: FaultContext, t: FaultTarget) -> tuple[str, IptablesChainUndo]:
    assert t.node is not None
    netns, cidr = t.node.netns, t.node.pod_cidr
    kernel.exec_in(netns, [tool, "-w", "5", "-t", "filter", "-N", FIREWALL_CHAIN])
    kernel.exec_in(netns, [tool, "-w", "5", "-t", "filter", "-A", FIREWALL_CHAIN, "-s", cidr, "-j", "DROP"])
    kernel.exec_in(netns, [tool, "-w", "5", "-t", "filter", "-A", FIREWALL_CHAIN, "-d", cidr, "-j", "DROP"])
    kernel.exec_in(netns, [tool, "-w", "5", "-t", "filter", "-I", "FORWARD", "1", "-j", FIREWALL_CHAIN])
    said = f"{tool} on {t.node.name}: FORWARD jumps to {FIREWALL_CHAIN}, which drops its pods' traffic ({cidr})"
    return said, IptablesChainUndo(t.node.name, tool, "filter", "FORWARD", FIREWALL_CHAIN)


def _heal_chain(ctx: FaultContext, undo: IptablesChainUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    base = [undo.tool, "-w", "5", "-t", undo.table]
    kernel.exec_in(netns, [*base, "-D", undo.builtin, "-j", undo.chain], check=False)
    kernel.exec_in(netns, [*base, "-F", undo.chain], check=False)
    kernel.exec_in(netns, [*base, "-X", undo.chain], check=False)


def _inject_iptables_chain(ctx: FaultContext, t: FaultTarget) -> tuple[str, IptablesChainUndo]:
    return _inject_chain_drop("iptables", ctx, t)


def _inject_legacy_chain(ctx: FaultContext, t: FaultTarget) -> tuple[str, IptablesChainUndo]:
    return _inject_chain_drop("iptables-legacy", ctx, t)


def _inject_input(ctx: FaultContext, t: FaultTarget) -> tuple[str, NftTableUndo]:
    assert t.node is not None
    port = overlay_port(ctx.plan)
    if port is not None:
        chain = "input", "input", f"udp dport {port} counter drop"
        said = f"nftables table inet filter on {t.node.name} drops the overlay's UDP {port} (input hook)"
    else:
        chain = "prerouting", "prerouting", f'iifname "eth0" ip daddr {t.node.pod_cidr} counter drop'
        said = f"nftables table inet filter on {t.node.name} drops what arrives on eth0 for its pods (prerouting hook)"
    name, hook, rule = chain
    _nft(
        t.node.netns,
        "table inet filter {\n"
        f"  chain {name} {{\n"
        f"    type filter hook {hook} priority filter; policy accept;\n"
        f"    {rule}\n"
        "  }\n"
        "}\n",
    )
    return said, NftTableUndo(t.node.name, "inet", "filter")


def _inject_output(ctx: FaultContext, t: FaultTarget) -> tuple[str, NftTableUndo]:
    assert t.node is not None
    _nft(
        t.node.netns,
        "table inet filter {\n"
        "  chain output {\n"
        "    type filter hook output priority filter; policy accept;\n"
        f"    ip daddr {CLUSTER_CIDR} meta l4proto tcp counter reject with tcp reset\n"
        "  }\n"
        "}\n",
    )
    said = f"nftables table inet filter on {t.node.name} rejects TCP the node sends to the pod network ({CLUSTER_CIDR})"
    return said, NftTableUndo(t.node.name, "inet", "filter")


NFT_FORWARD_DROP = Fault(
    "nft-forward-drop",
    Verdict.FORWARD_CHAIN_DROPS,
    "a native nftables table inet filter on a node rejects forwarded traffic from and to its pod CIDR",
    Needs.NODE,
    _inject_nft_forward,
    _heal_nft_table,
    NftTableUndo,
)
FORWARD_RULE_DROP = Fault(
    "forward-rule-drop",
    Verdict.FORWARD_CHAIN_DROPS,
    "an explicit iptables rule (FORWARD → HOST-FIREWALL chain) drops a node's pod CIDR",
    Needs.NODE,
    _inject_iptables_chain,
    _heal_chain,
    IptablesChainUndo,
)
LEGACY_FORWARD_DROP = Fault(
    "legacy-forward-drop",
    Verdict.FORWARD_CHAIN_DROPS,
    "the same rule written with iptables-legacy, which iptables-nft does not show",
    Needs.NODE,
    _inject_legacy_chain,
    _heal_chain,
    IptablesChainUndo,
)
INPUT_DROP = Fault(
    "input-drop",
    Verdict.NODE_FIREWALL_DROPS,
    "a native nftables input chain on a node drops the overlay port (host-gw: a prerouting chain drops its pods' traffic)",
    Needs.NODE,
    _inject_input,
    _heal_nft_table,
    NftTableUndo,
    needs_trace=True,
)
OUTPUT_DROP = Fault(
    "output-drop",
    Verdict.NODE_FIREWALL_DROPS,
    "a native nftables output chain on a node rejects TCP the node sends to the pod network",
    Needs.NODE,
    _inject_output,
    _heal_nft_table,
    NftTableUndo,
)
