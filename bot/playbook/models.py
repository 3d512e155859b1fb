"""The diagnosis as plain frozen data: what a step observed and what the investigation concluded.

These types cross every boundary (playbook -> history -> renderers) unchanged; they hold no Slack,
SQL or gRPC objects. Evidence data is JSON-compatible so it can be stored and rendered as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bot.parse.models import Question

JSONValue = Any
"""A JSON-compatible value (dict, list, str, int, float, bool, None)."""


class StepStatus(StrEnum):
    """Outcome of one playbook step."""

    PASS = "pass"  # noqa: S105 - a step status, not a password
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


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


@dataclass(frozen=True)
class Evidence:
    """One observation: what was looked at (`kind`, e.g. "route-lookup"), where, and what was seen."""

    kind: str
    summary: str
    node: str | None = None
    data: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """The result of one playbook step."""

    name: str
    status: StepStatus
    summary: str
    evidence: tuple[Evidence, ...] = ()
    duration_ms: float = 0.0
    node: str | None = None


@dataclass(frozen=True)
class Finding:
    """A problem seen on the way that is not the verdict."""

    code: VerdictCode
    summary: str
    node: str | None = None
    hop: Hop | None = None


@dataclass(frozen=True)
class Verdict:
    """The one conclusion of an investigation: the first cause on the packet's path."""

    code: VerdictCode
    summary: str
    node: str | None = None
    hop: Hop | None = None
    remediation: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameChoice:
    """One object an ambiguous name may mean (``svc/api in shop``) and the question that names it precisely."""

    label: str
    question: str


@dataclass(frozen=True)
class InvestigationResult:
    """A finished investigation, as stored and rendered."""

    id: str
    question: str
    source: str
    target: str
    verdict: Verdict
    steps: tuple[StepResult, ...]
    findings: tuple[Finding, ...]
    duration_ms: float
    started_at: datetime
    namespaces: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    per_source: dict[str, str] = field(default_factory=dict)
    parsed: Question | None = None
    seen_before: str | None = None
    """When the same source → target reached the same verdict before: "seen 3 times in 30 days, …"."""
    choices: tuple[NameChoice, ...] = ()
    """For an AMBIGUOUS_NAME verdict: each object the name matched, with the question to ask instead."""
