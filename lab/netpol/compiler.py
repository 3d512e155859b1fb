"""Compile NetworkPolicies into iptables filter rules for one node, laid out as kube-router does.

Chain layout (all in the filter table of the node's network namespace):

    FORWARD ─► KUBE-ROUTER-FORWARD   (routed and bridged pod traffic; br_netfilter sends bridged
    INPUT   ─► KUBE-ROUTER-INPUT      IPv4 through FORWARD; INPUT sees pods talking to their node)

    KUBE-ROUTER-FORWARD / -INPUT
        -d <local pod, ingress-isolated> -j KUBE-POD-FW-<hash(pod)>
        -s <local pod, egress-isolated>  -j KUBE-POD-FW-<hash(pod)>
        -m mark --mark 0x20000/0x20000 -j ACCEPT        (passed every policy check that applied)

    KUBE-POD-FW-<hash(namespace, pod)>               one per isolated local pod
        ctstate RELATED,ESTABLISHED -j ACCEPT          (replies of allowed flows)
        -d <pod> -j MARK --set-xmark 0x0/0x10000       ┐ ingress section, when ingress-isolated:
        -d <pod> -j KUBE-NWPLCY-<hash(policy,Ingress)> │ each selecting policy may set 0x10000
        -d <pod> -m mark ! --mark 0x10000/0x10000 -j DROP ┘
        -s <pod> ... the same for egress ...
        -j MARK --set-xmark 0x20000/0x30000            (checked: clear "allowed", set "evaluated")

    KUBE-NWPLCY-<hash(namespace, policy, direction)>  one per policy and direction selecting a local pod
        [-s|-d <peer>] [-p proto -m proto --dport N[:M]] -j MARK --set-xmark 0x10000/0x10000
        (peers with ipBlock `except` jump to KUBE-IPBLK-<hash>: RETURN for each exception, then MARK)

A flow between two isolated local pods visits the source's chain (egress) and the destination's
chain (ingress); the "allowed" bit is cleared before each check, so both must pass. Only the
ingress/egress direction that isolates a pod is checked, so pods no policy selects are unaffected.
Traffic that the node itself originates (OUTPUT) is not policed, as with kube-router and Calico.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lab.netpol.model import (
    DIRECTIONS,
    NAMESPACE_NAME_LABEL,
    Direction,
    IPBlock,
    NetworkPolicySpec,
    PodEndpoint,
    PolicyPeer,
    PolicyPort,
    parse_namespace_labels,
    parse_network_policy,
    parse_pod,
)

FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
INPUT_CHAIN = "KUBE-ROUTER-INPUT"
POD_CHAIN_PREFIX = "KUBE-POD-FW-"
POLICY_CHAIN_PREFIX = "KUBE-NWPLCY-"
IPBLOCK_CHAIN_PREFIX = "KUBE-IPBLK-"
MANAGED_CHAIN_PREFIXES = ("KUBE-ROUTER-", POD_CHAIN_PREFIX, POLICY_CHAIN_PREFIX, IPBLOCK_CHAIN_PREFIX)
BUILTIN_JUMPS = (("FORWARD", FORWARD_CHAIN), ("INPUT", INPUT_CHAIN))
"""Which built-in chain jumps to which of our top chains (installed by the apply step)."""

MARK_ALLOWED = 0x10000
MARK_EVALUATED = 0x20000

_SET_ALLOWED = ["-j", "MARK", "--set-xmark", f"{MARK_ALLOWED:#x}/{MARK_ALLOWED:#x}"]
_COMMENT_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/=,()-]")


@dataclass(frozen=True)
class FilterChain:
    """One chain we own: its name and its rules (arguments after `-A NAME`), in order."""

    name: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class PolicyChains:
    """Everything the node's policy enforcement consists of, before it is written as a script."""

    node_name: str
    chains: tuple[FilterChain, ...]

    def chain(self, name: str) -> FilterChain:
        """The chain called `name` (KeyError if this node has none by that name)."""
        for chain in self.chains:
            if chain.name == name:
                return chain
        raise KeyError(name)


def _hash16(*parts: str) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def pod_chain_name(namespace: str, pod_name: str) -> str:
    """The KUBE-POD-FW chain of a pod (28 characters, within iptables' limit)."""
    return POD_CHAIN_PREFIX + _hash16(namespace, pod_name)


def policy_chain_name(namespace: str, policy_name: str, direction: Direction) -> str:
    """The KUBE-NWPLCY chain holding one policy's rules for one direction."""
    return POLICY_CHAIN_PREFIX + _hash16(namespace, policy_name, direction)


def _ipblock_chain_name(side: str, block: IPBlock) -> str:
    return IPBLOCK_CHAIN_PREFIX + _hash16(side, str(block.cidr), *(str(e) for e in block.excepts))


def _comment(text: str) -> str:
    return '-m comment --comment "' + _COMMENT_UNSAFE.sub("_", text)[:200] + '"'


def _host(ip: str) -> str:
    return f"{ip}/32"


def _port_args(protocol: str, dport: str | None) -> list[str]:
    proto = protocol.lower()
    if dport is None:
        return ["-p", proto]
    return ["-p", proto, "-m", proto, "--dport", dport]


def _numeric_dport(port: PolicyPort) -> str | None:
    if port.port is None:
        return None
    if port.end_port is not None and port.end_port != port.port:
        return f"{port.port}:{port.end_port}"
    return str(port.port)


class _NodeCompiler:
    """Holds the parsed cluster state while one node's chains are built."""

    def __init__(
        self,
        namespace_labels: Mapping[str, Mapping[str, str]],
        endpoints: Sequence[PodEndpoint],
        node_name: str,
    ) -> None:
        self.namespace_labels = namespace_labels
        self.endpoints = endpoints
        self.node_name = node_name
        self.ipblock_chains: dict[str, list[str]] = {}

    def peer_pods(self, peer: PolicyPeer, policy_namespace: str) -> list[PodEndpoint]:
        """Pods a selector peer stands for: both selectors in one peer are ANDed."""
        selected = []
        for pod in self.endpoints:
            if peer.namespace_selector is None:
                in_namespace = pod.namespace == policy_namespace
            else:
                in_namespace = peer.namespace_selector.matches(self.namespace_labels[pod.namespace])
            if in_namespace and (peer.pod_selector is None or peer.pod_selector.matches(pod.labels)):
                selected.append(pod)
        return selected

    def ipblock_match(self, side: str, block: IPBlock) -> tuple[list[str], list[str]] | None:
        """(match args, target args) for an IPv4 ipBlock; None for IPv6 (this is an IPv4 table).

        Without exceptions the CIDR is matched in place; with exceptions the rule jumps to a
        KUBE-IPBLK chain that RETURNs for each exception and marks the rest of the CIDR.
        """
        if block.cidr.version != 4:
            return None
        flag = "-s" if side == "src" else "-d"
        excepts = [e for e in block.excepts if e.version == 4]
        if not excepts:
            return [flag, str(block.cidr)], list(_SET_ALLOWED)
        name = _ipblock_chain_name(side, block)
        if name not in self.ipblock_chains:
            rules = [f"{flag} {exc} {_comment(f'ipBlock except {exc}')} -j RETURN" for exc in excepts]
            rules.append(" ".join([flag, str(block.cidr), _comment(f"ipBlock {block.cidr}"), *_SET_ALLOWED]))
            self.ipblock_chains[name] = rules
        return [], ["-j", name]

    def rule_lines(
        self,
        policy: NetworkPolicySpec,
        direction: Direction,
        *,
        peer: PolicyPeer | None,
        port: PolicyPort | None,
        targets: Sequence[PodEndpoint],
        comment: str,
    ) -> list[str]:
        """Lines of a policy chain that allow one (peer, port) pair of one rule."""
        peer_flag = "-s" if direction == "Ingress" else "-d"
        lines: list[list[str]] = []
        if port is not None and isinstance(port.port, str):
            lines = self._named_port_lines(policy, direction, peer, port, targets)
        else:
            port_args = [] if port is None else _port_args(port.protocol, _numeric_dport(port))
            if peer is None:
                lines = [[*port_args, *_SET_ALLOWED]]
            elif peer.ip_block is not None:
                side = "src" if direction == "Ingress" else "dst"
                block = self.ipblock_match(side, peer.ip_block)
                if block is not None:
                    lines = [[*block[0], *port_args, *block[1]]]
            else:
                ips = sorted({pod.ip for pod in self.peer_pods(peer, policy.namespace)}, key=_ip_key)
                lines = [[peer_flag, _host(ip), *port_args, *_SET_ALLOWED] for ip in ips]
        return [_with_comment(args, comment) for args in lines]

    def _named_port_lines(
        self,
        policy: NetworkPolicySpec,
        direction: Direction,
        peer: PolicyPeer | None,
        port: PolicyPort,
        targets: Sequence[PodEndpoint],
    ) -> list[list[str]]:
        """A named port is resolved on the destination pod: the selected pod for ingress, the peer for egress."""
        assert isinstance(port.port, str)
        lines: list[list[str]] = []
        if direction == "Ingress":
            resolved = [(pod.ip, pod.resolve_port(port.port, port.protocol)) for pod in targets]
            for dst_ip, number in sorted(resolved, key=lambda item: _ip_key(item[0])):
                if number is None:
                    continue
                dst = ["-d", _host(dst_ip), *_port_args(port.protocol, str(number))]
                if peer is None:
                    lines.append([*dst, *_SET_ALLOWED])
                elif peer.ip_block is not None:
                    block = self.ipblock_match("src", peer.ip_block)
                    if block is not None:
                        lines.append([*block[0], *dst, *block[1]])
                else:
                    ips = sorted({p.ip for p in self.peer_pods(peer, policy.namespace)}, key=_ip_key)
                    lines.extend(["-s", _host(ip), *dst, *_SET_ALLOWED] for ip in ips)
            return lines
        if peer is None:
            destinations = list(self.endpoints)
        elif peer.ip_block is not None:
            destinations = [pod for pod in self.endpoints if peer.ip_block.contains(pod.ip)]
        else:
            destinations = self.peer_pods(peer, policy.namespace)
        seen: set[tuple[str, int]] = set()
        for pod in sorted(destinations, key=lambda p: _ip_key(p.ip)):
            number = pod.resolve_port(port.port, port.protocol)
            if number is not None and (pod.ip, number) not in seen:
                seen.add((pod.ip, number))
                lines.append(["-d", _host(pod.ip), *_port_args(port.protocol, str(number)), *_SET_ALLOWED])
        return lines


def _with_comment(args: list[str], comment: str) -> str:
    jump = args.index("-j")
    return " ".join([*args[:jump], _comment(comment), *args[jump:]])


def _ip_key(ip: str) -> tuple[int, ...]:
    return tuple(int(part) for part in ip.split("."))


def _dedupe(lines: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lines))


def compile_policy_chains(
    namespaces: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    policies: Sequence[Mapping[str, Any]],
    node_name: str,
) -> PolicyChains:
    """Build the chains that enforce `policies` for the pods scheduled on `node_name`.

    Inputs are Kubernetes-shaped dicts (Namespace, Pod, networking.k8s.io/v1 NetworkPolicy).
    Raises `InvalidNetworkPolicy` for objects the API server would have rejected.
    """
    namespace_labels = parse_namespace_labels(namespaces)
    endpoints = [pod for pod in (parse_pod(obj) for obj in pods) if pod is not None]
    for pod in endpoints:
        namespace_labels.setdefault(pod.namespace, {NAMESPACE_NAME_LABEL: pod.namespace})
    specs = sorted((parse_network_policy(obj) for obj in policies), key=lambda p: (p.namespace, p.name))
    local = sorted((p for p in endpoints if p.node_name == node_name), key=lambda p: (p.namespace, p.name))
    compiler = _NodeCompiler(namespace_labels, endpoints, node_name)

    # Which local pods each policy selects, per direction it isolates.
    selecting: dict[tuple[str, str, Direction], list[PodEndpoint]] = {}
    for spec in specs:
        chosen = [p for p in local if p.namespace == spec.namespace and spec.pod_selector.matches(p.labels)]
        if not chosen:
            continue
        for direction in DIRECTIONS:
            if direction in spec.policy_types:
                selecting[(spec.namespace, spec.name, direction)] = chosen

    policy_chains: list[FilterChain] = []
    for spec in specs:
        for direction in DIRECTIONS:
            targets = selecting.get((spec.namespace, spec.name, direction))
            if targets is None:
                continue
            lines: list[str] = []
            for index, rule in enumerate(spec.rules(direction)):
                comment = f"{spec.namespace}/{spec.name} {direction.lower()} rule {index}"
                for peer in rule.peers or (None,):
                    for port in rule.ports or (None,):
                        lines.extend(compiler.rule_lines(spec, direction, peer=peer, port=port, targets=targets, comment=comment))
            name = policy_chain_name(spec.namespace, spec.name, direction)
            policy_chains.append(FilterChain(name, _dedupe(lines)))

    pod_chains: list[FilterChain] = []
    forward_rules: list[str] = []
    input_rules: list[str] = []
    for pod in local:
        sections: list[str] = []
        chain = pod_chain_name(pod.namespace, pod.name)
        who = f"{pod.namespace}/{pod.name}"
        for direction in DIRECTIONS:
            flag = "-d" if direction == "Ingress" else "-s"
            applied = [
                policy_chain_name(spec.namespace, spec.name, direction)
                for spec in specs
                if pod in selecting.get((spec.namespace, spec.name, direction), ())
            ]
            if not applied:
                continue
            match = f"{flag} {_host(pod.ip)}"
            word = direction.lower()
            sections.append(f"{match} {_comment(f'start {word} check of {who}')} -j MARK --set-xmark 0x0/{MARK_ALLOWED:#x}")
            sections.extend(f"{match} {_comment(f'{word} policy for {who}')} -j {name}" for name in applied)
            sections.append(
                f"{match} -m mark ! --mark {MARK_ALLOWED:#x}/{MARK_ALLOWED:#x} "
                f"{_comment(f'drop {word} of {who} that no NetworkPolicy allows')} -j DROP"
            )
            jump = f"{match} {_comment(f'{word} of pod {who}')} -j {chain}"
            forward_rules.append(jump)
            if direction == "Egress":
                input_rules.append(jump)
        if not sections:
            continue
        rules = [
            f"{_comment(f'return traffic of allowed flows of {who}')} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            *sections,
            f"{_comment('policy checks passed')} -j MARK --set-xmark {MARK_EVALUATED:#x}/{MARK_ALLOWED | MARK_EVALUATED:#x}",
        ]
        pod_chains.append(FilterChain(chain, tuple(rules)))

    accept = f"-m mark --mark {MARK_EVALUATED:#x}/{MARK_EVALUATED:#x} {_comment('allowed by NetworkPolicy')} -j ACCEPT"
    top = [
        FilterChain(FORWARD_CHAIN, (*forward_rules, accept) if forward_rules else ()),
        FilterChain(INPUT_CHAIN, (*input_rules, accept) if input_rules else ()),
    ]
    ipblock = [FilterChain(name, tuple(rules)) for name, rules in sorted(compiler.ipblock_chains.items())]
    return PolicyChains(node_name, (*top, *pod_chains, *policy_chains, *ipblock))


def render_chains(chains: PolicyChains) -> str:
    """Write compiled chains as an `iptables-restore --noflush` script for the filter table.

    Declaring a chain creates it or, when it exists, flushes it; other chains are left alone.
    Deleting chains no longer used and the jumps from FORWARD/INPUT are the apply step's job,
    because they depend on what the node's table holds now.
    """
    lines = ["*filter"]
    lines.extend(f":{chain.name} - [0:0]" for chain in chains.chains)
    for chain in chains.chains:
        lines.extend(f"-A {chain.name} {rule}" for rule in chain.rules)
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def render_policy_rules(
    namespaces: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    policies: Sequence[Mapping[str, Any]],
    node_name: str,
) -> str:
    """The `iptables-restore --noflush` script that enforces `policies` on node `node_name`.

    Pure: same input, same text. See the module docstring for the chain layout.
    """
    return render_chains(compile_policy_chains(namespaces, pods, policies, node_name))
