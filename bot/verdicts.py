"""The vocabulary every layer shares: where on the path something happens (`Hop`) and every code an
investigation can end with (`VerdictCode`). It sits at the bottom so that the cluster resolver can
name a verdict without importing the playbook; `bot.playbook.models` re-exports both."""

from __future__ import annotations

from enum import StrEnum


class Hop(StrEnum):
    """Where on the packet's path something happens, in path order (VERDICTS.md)."""

    API = "api"
    DNS = "dns"
    SOURCE_POD = "source-pod"
    SOURCE_NODE = "source-node"
    SERVICE_NAT = "service-nat"
    UNDERLAY = "underlay"
    DESTINATION_NODE = "destination-node"
    DESTINATION_POD = "destination-pod"
    POLICY = "policy"


class VerdictCode(StrEnum):
    """Every code an investigation can end with (VERDICTS.md)."""

    NO_FAULT_FOUND = "NO_FAULT_FOUND"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    TARGET_NOT_FOUND = "TARGET_NOT_FOUND"
    AMBIGUOUS_NAME = "AMBIGUOUS_NAME"
    SOURCE_POD_NOT_RUNNING = "SOURCE_POD_NOT_RUNNING"
    POD_HAS_NO_IP = "POD_HAS_NO_IP"
    SERVICE_NO_ENDPOINTS = "SERVICE_NO_ENDPOINTS"
    SERVICE_ENDPOINTS_NOT_READY = "SERVICE_ENDPOINTS_NOT_READY"
    SERVICE_PORT_MISMATCH = "SERVICE_PORT_MISMATCH"
    DNS_RESOLUTION_FAILED = "DNS_RESOLUTION_FAILED"
    NETWORK_POLICY_DENIES_EGRESS = "NETWORK_POLICY_DENIES_EGRESS"
    NETWORK_POLICY_DENIES_INGRESS = "NETWORK_POLICY_DENIES_INGRESS"
    KUBE_PROXY_RULES_MISSING = "KUBE_PROXY_RULES_MISSING"
    KUBE_PROXY_RULES_STALE = "KUBE_PROXY_RULES_STALE"
    CONNTRACK_TABLE_FULL = "CONNTRACK_TABLE_FULL"
    CONNTRACK_STALE_ENTRY = "CONNTRACK_STALE_ENTRY"
    POD_INTERFACE_DOWN = "POD_INTERFACE_DOWN"
    VETH_NOT_ON_BRIDGE = "VETH_NOT_ON_BRIDGE"
    POD_ROUTE_MISSING = "POD_ROUTE_MISSING"
    NODE_ROUTE_MISSING = "NODE_ROUTE_MISSING"
    IP_FORWARDING_DISABLED = "IP_FORWARDING_DISABLED"
    FORWARD_CHAIN_DROPS = "FORWARD_CHAIN_DROPS"
    RP_FILTER_DROPS = "RP_FILTER_DROPS"
    MTU_MISMATCH = "MTU_MISMATCH"
    OVERLAY_DEVICE_DOWN = "OVERLAY_DEVICE_DOWN"
    DESTINATION_NOT_LISTENING = "DESTINATION_NOT_LISTENING"
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    UNDETERMINED = "UNDETERMINED"
