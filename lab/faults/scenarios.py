"""Lab scenarios: real-world setups that are not faults, recorded and healed like faults.

A scenario changes real kernel state inside a lab namespace the way a real cluster can be built,
without breaking anything: the bot should find nothing wrong, and say what it did not inspect. It
is not in the fault catalog, whose every entry breaks a path and leads to a verdict other than
NO_FAULT_FOUND; `kubereach lab scenario NAME` starts one and `kubereach lab heal` undoes it with the
faults.

`foreign-service-proxy`: service NAT on one node is done by something other than kube-proxy, as on a
node where Cilium replaces kube-proxy. The lab's kube-proxy on the node is stopped; its rules are
moved, unchanged in meaning, into tables of another name (iptables: every `KUBE-` chain renamed
`LBX-`; nftables: table `ip kube-proxy` copied to `ip lbx` and deleted) so service traffic still
works; and the node gets links shaped like Cilium's (the cilium_host/cilium_net veth pair and a
cilium_vxlan device in external mode). The agent sees no kube-proxy rules and Cilium's links.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab import kernel, processes
from lab.errors import LabError
from lab.faults.common import restart_kube_proxy
from lab.faults.model import FaultContext, Obj, Undo
from lab.plan import NodePlan

RENAMED_CHAIN_PREFIX = "LBX-"
"""What kube-proxy's `KUBE-` chains are renamed to (shorter, so no name grows past iptables' 28)."""
FOREIGN_NFT_TABLE = "lbx"
CILIUM_VXLAN_PORT = 8479
CILIUM_LINKS = ("cilium_host", "cilium_vxlan")
"""The links the scenario adds (deleting cilium_host deletes its peer cilium_net)."""


@dataclass(frozen=True)
class ForeignProxyUndo(Undo):
    """The node whose service NAT was handed over, and its iptables rules as kube-proxy left them."""

    node: str
    mode: str
    iptables: str = ""


def _move_iptables(node: NodePlan) -> str:
    """Rename every KUBE- chain of every table, atomically per table; returns the rules before."""
    before = kernel.exec_in(node.netns, ["iptables-save"]).stdout
    renamed = before.replace("KUBE-", RENAMED_CHAIN_PREFIX)
    kernel.exec_in(node.netns, ["iptables-restore"], stdin=renamed)
    return before


def _move_nftables(node: NodePlan) -> None:
    """Copy table ip kube-proxy to table ip lbx, then delete the original, in one nft transaction."""
    listed = kernel.exec_in(node.netns, ["nft", "list", "table", "ip", "kube-proxy"]).stdout
    if not listed.startswith("table ip kube-proxy {"):
        raise LabError(f"no nftables table ip kube-proxy on {node.name}", exit_code=2)
    copy = listed.replace("table ip kube-proxy {", f"table ip {FOREIGN_NFT_TABLE} {{", 1)
    kernel.exec_in(node.netns, ["nft", "-f", "-"], stdin=f"{copy}\ndelete table ip kube-proxy\n")


def _add_cilium_links(node: NodePlan) -> None:
    ns = node.netns
    kernel.run(["ip", "-n", ns, "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net"])
    # Cilium's tunnel port is 8472 too, which flannel.1 holds in the lab: a port of its own here.
    kernel.run(["ip", "-n", ns, "link", "add", "cilium_vxlan", "type", "vxlan", "external", "dstport", str(CILIUM_VXLAN_PORT)])
    for name in ("cilium_net", "cilium_host", "cilium_vxlan"):
        kernel.run(["ip", "-n", ns, "link", "set", name, "up"])


def _inject_foreign_proxy(ctx: FaultContext, node: NodePlan) -> tuple[str, ForeignProxyUndo]:
    if ctx.state.kubernetes:
        raise LabError(
            "foreign-service-proxy drives the lab's own kube-proxy; this lab runs the real one",
            hint="stop the node's kube-proxy by hand (`kill -STOP PID`) and rename its chains",
            exit_code=2,
        )
    _add_cilium_links(node)
    pid = ctx.state.processes.pop(f"kube-proxy/{node.name}", None)
    if pid:
        processes.stop([pid])
    ctx.state.save()
    mode = ctx.plan.options.proxy
    undo = ForeignProxyUndo(node.name, mode)
    if mode == "iptables":
        undo = ForeignProxyUndo(node.name, mode, _move_iptables(node))
    else:
        _move_nftables(node)
    where = f"{RENAMED_CHAIN_PREFIX}* chains" if mode == "iptables" else f"table ip {FOREIGN_NFT_TABLE}"
    return (
        f"service NAT on {node.name} is done outside kube-proxy ({where}) beside Cilium-shaped links; "
        "kube-proxy there is stopped",
        undo,
    )


def _heal_foreign_proxy(ctx: FaultContext, undo: ForeignProxyUndo) -> None:
    node = ctx.plan.node(undo.node)
    for name in CILIUM_LINKS:
        kernel.run(["ip", "-n", node.netns, "link", "del", name], check=False)
    if undo.mode == "iptables":
        if undo.iptables:
            kernel.exec_in(node.netns, ["iptables-restore"], stdin=undo.iptables)
    else:
        kernel.exec_in(node.netns, ["nft", "delete", "table", "ip", FOREIGN_NFT_TABLE], check=False)
    restart_kube_proxy(ctx, undo.node)


@dataclass(frozen=True)
class Scenario:
    """A real-world setup the lab can reproduce on one node, and how to undo it."""

    name: str
    summary: str
    start: Callable[[FaultContext, NodePlan], tuple[str, Any]]
    heal: Callable[[FaultContext, Any], None]
    undo: type[Undo]

    def heal_record(self, ctx: FaultContext, undo: Obj) -> None:
        """Heal from the undo record as the lab state stored it."""
        self.heal(ctx, self.undo.from_json(undo))


FOREIGN_SERVICE_PROXY = Scenario(
    "foreign-service-proxy",
    "a node whose service NAT is done outside kube-proxy, with Cilium-shaped links (expect NO_FAULT_FOUND, not inspected)",
    _inject_foreign_proxy,
    _heal_foreign_proxy,
    ForeignProxyUndo,
)
SCENARIOS = {s.name: s for s in (FOREIGN_SERVICE_PROXY,)}
