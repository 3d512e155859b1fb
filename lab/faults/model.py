"""The fault catalog's vocabulary: what a fault is, what it is pointed at, and what `heal` needs to undo it.

`Verdict` and `Needs` are the allowed values of a catalog entry; an undo record is a small dataclass
per kind of change, stored in the lab state as the JSON object it was before (`to_json`/`from_json`),
so state files written before these types existed still heal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, Self, TypeVar

from lab.apiclient import LabApi
from lab.errors import LabError
from lab.plan import LabPlan, NodePlan, PodPlan, host_veth_name, pod_netns_name, uid_for
from lab.state import LabState
from lab.upstream.placement import pod_plan as upstream_pod_plan

Obj = dict[str, Any]


class Verdict(StrEnum):
    """The verdict code a fault should make the bot reach; the values are the bot's verdict codes.

    The lab does not import the bot; a unit test checks these values are among the bot's codes.
    """

    NODE_ROUTE_MISSING = "NODE_ROUTE_MISSING"
    IP_FORWARDING_DISABLED = "IP_FORWARDING_DISABLED"
    FORWARD_CHAIN_DROPS = "FORWARD_CHAIN_DROPS"
    CONNTRACK_TABLE_FULL = "CONNTRACK_TABLE_FULL"
    CONNTRACK_STALE_ENTRY = "CONNTRACK_STALE_ENTRY"
    OVERLAY_DEVICE_DOWN = "OVERLAY_DEVICE_DOWN"
    RP_FILTER_DROPS = "RP_FILTER_DROPS"
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    POD_INTERFACE_DOWN = "POD_INTERFACE_DOWN"
    VETH_NOT_ON_BRIDGE = "VETH_NOT_ON_BRIDGE"
    POD_ROUTE_MISSING = "POD_ROUTE_MISSING"
    MTU_MISMATCH = "MTU_MISMATCH"
    DESTINATION_NOT_LISTENING = "DESTINATION_NOT_LISTENING"
    SOURCE_POD_NOT_RUNNING = "SOURCE_POD_NOT_RUNNING"
    POD_HAS_NO_IP = "POD_HAS_NO_IP"
    SERVICE_NO_ENDPOINTS = "SERVICE_NO_ENDPOINTS"
    SERVICE_ENDPOINTS_NOT_READY = "SERVICE_ENDPOINTS_NOT_READY"
    SERVICE_PORT_MISMATCH = "SERVICE_PORT_MISMATCH"
    NETWORK_POLICY_DENIES_INGRESS = "NETWORK_POLICY_DENIES_INGRESS"
    NETWORK_POLICY_DENIES_EGRESS = "NETWORK_POLICY_DENIES_EGRESS"
    DNS_RESOLUTION_FAILED = "DNS_RESOLUTION_FAILED"
    KUBE_PROXY_RULES_MISSING = "KUBE_PROXY_RULES_MISSING"
    KUBE_PROXY_RULES_STALE = "KUBE_PROXY_RULES_STALE"
    UNDERLAY_DROPS = "UNDERLAY_DROPS"
    NODE_FIREWALL_DROPS = "NODE_FIREWALL_DROPS"
    PACKET_LOSS = "PACKET_LOSS"
    # Paths to and from the outside world (issue 15): the lab breaks them; the bot's steps for them
    # come later, so these codes are documented in docs/verdicts.md but not yet the bot's.
    NODEPORT_NO_LOCAL_ENDPOINTS = "NODEPORT_NO_LOCAL_ENDPOINTS"
    EGRESS_NOT_MASQUERADED = "EGRESS_NOT_MASQUERADED"
    NODE_HAS_NO_ROUTE_OUT = "NODE_HAS_NO_ROUTE_OUT"
    UPSTREAM_DNS_FAILED = "UPSTREAM_DNS_FAILED"
    HAIRPIN_BROKEN = "HAIRPIN_BROKEN"
    HOST_PORT_CONFLICT = "HOST_PORT_CONFLICT"


class Needs(StrEnum):
    """What a fault is pointed at (`--node`, `--pod`, `--service`); unnamed parts get lab defaults."""

    NONE = "none"
    NODE = "node"
    POD = "pod"
    SERVICE = "service"
    NODE_POD = "node+pod"
    NODE_SERVICE = "node+service"
    POD_SERVICE = "pod+service"
    NODE_PAIR = "from+to"
    """`--from NODE --to NODE`: traffic leaving one node for another (on the fabric between them)."""

    def wants(self, part: str) -> bool:
        """Whether this fault is pointed at a `part` ("node", "pod", "service", "from" or "to")."""
        return part in self.value.split("+")


@dataclass(frozen=True)
class Undo:
    """Base of the undo records: what `heal` needs, as it is stored in the lab state's JSON."""

    omit_when_none: ClassVar[tuple[str, ...]] = ()
    """Optional fields left out of the JSON when unset (older records never had them)."""

    def to_json(self) -> Obj:
        """The record as the lab state stores it."""
        data = dataclasses.asdict(self)
        return {k: v for k, v in data.items() if not (k in self.omit_when_none and v is None)}

    @classmethod
    def from_json(cls, data: Obj) -> Self:
        """A record from the lab state (unknown keys ignored, so older and newer files load)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


U = TypeVar("U", bound=Undo)


@dataclass(frozen=True)
class FaultTarget:
    """What the user pointed the fault at (validated), with lab defaults filled in."""

    node: NodePlan | None
    pod: Obj | None
    service: Obj | None
    to: NodePlan | None = None
    """With `--to`: the node traffic is going to (`node` is then where it comes from, `--from`)."""
    percent: int | None = None
    """`--percent`: how much of the traffic a lossy fault drops."""
    mtu: int | None = None
    """`--mtu`: what a link carries after an MTU fault."""


@dataclass
class FaultContext:
    """Everything a fault needs: the lab, its plan, its API."""

    state: LabState
    plan: LabPlan
    api: LabApi

    def pods(self) -> list[Obj]:
        """Current (non-hostNetwork) pods from the API."""
        return [p for p in self.api.get("/api/v1/pods")["items"] if not p["spec"].get("hostNetwork")]

    def services(self) -> list[Obj]:
        """Current services from the API."""
        items: list[Obj] = self.api.get("/api/v1/services")["items"]
        return items

    def pod_plan(self, pod: Obj) -> PodPlan:
        """A PodPlan for a pod object (pods made by faults are not in the original plan)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if self.state.kubernetes:  # upstream controllers name the pods; the lab's kubelet built them by this mapping
            return upstream_pod_plan(self.plan, pod, self.plan.node(pod["spec"]["nodeName"]), pod["status"].get("podIP", ""))
        for p in self.plan.pods:
            if p.namespace == ns and p.name == name:
                return p
        netns = pod["metadata"].get("annotations", {}).get("kubereach.io/lab-netns") or pod_netns_name(
            self.state.prefix, ns, name
        )
        labels = pod["metadata"].get("labels", {})
        base = next((p for p in self.plan.pods if p.namespace == ns and dict(p.labels) == labels), None)
        if base is None:
            raise LabError(f"pod {ns}/{name} was not made by the lab; it cannot be changed by a fault", exit_code=2)
        return dataclasses.replace(
            base,
            name=name,
            uid=uid_for("pod", ns, name),
            node=pod["spec"]["nodeName"],
            ip=pod["status"].get("podIP", ""),
            netns=netns,
            host_veth=host_veth_name(self.plan.options.cni, self.state.prefix, ns, name),
        )


@dataclass(frozen=True)
class Fault(Generic[U]):
    """One entry of the catalog: its name, the verdict it should lead to, and how to break and heal it."""

    name: str
    verdict: Verdict
    summary: str
    needs: Needs
    inject: Callable[[FaultContext, FaultTarget], tuple[str, U]]
    heal: Callable[[FaultContext, U], None]
    undo: type[U]
    takes: frozenset[str] = frozenset()
    """Options beyond its `Needs` it accepts: "from", "to" (optional there), "percent", "mtu"."""
    needs_trace: bool = False
    """Only packets reveal it: what it changes lies outside what the state checks read (the fabric
    between the nodes) or says nothing until packets meet it, so its verdict comes from the bot's
    packet trace (captures at each probe point) rather than from the state checks."""

    def heal_record(self, ctx: FaultContext, undo: Obj) -> None:
        """Heal from the undo record as the lab state stored it."""
        self.heal(ctx, self.undo.from_json(undo))
