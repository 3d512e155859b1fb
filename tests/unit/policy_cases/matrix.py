"""Building blocks for the NetworkPolicy truth-table tests: small clusters and a table reader.

A table is written the way the upstream network-policy e2e tests print reachability:

    TCP/80  x/a x/b
    x/a      X   .
    x/b      X   X

The header names the protocol/port and the destination pods, each row a source pod; `X` means
allowed, `.` denied. Every table must cover every pod as a source and as a destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.policy import Cluster, cluster_from_objects, evaluate

Obj = dict[str, Any]


def namespace(name: str, **labels: str) -> Obj:
    """A v1 Namespace manifest (the implicit name label is left to the evaluator)."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def pod(ns: str, name: str, ip: str, labels: dict[str, str], ports: list[tuple[str | None, int, str]]) -> Obj:
    """A v1 Pod manifest with one container declaring `ports` as (name, containerPort, protocol)."""
    container_ports = []
    for port_name, number, protocol in ports:
        entry: Obj = {"containerPort": number, "protocol": protocol}
        if port_name:
            entry["name"] = port_name
        container_ports.append(entry)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "agnhost", "ports": container_ports}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def netpol(ns: str, name: str, spec: Obj) -> Obj:
    """A networking.k8s.io/v1 NetworkPolicy manifest."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
    }


SERVE_PORTS: list[tuple[str | None, int, str]] = [
    ("serve-80-tcp", 80, "TCP"),
    ("serve-81-tcp", 81, "TCP"),
    ("serve-80-udp", 80, "UDP"),
    ("serve-81-udp", 81, "UDP"),
]


def xyz_cluster() -> list[Obj]:
    """The upstream e2e model: namespaces x, y, z (label ns=<name>), pods a, b, c in each (pod=<name>).

    Pod IPs: x/a 10.0.1.1, x/b 10.0.1.2, x/c 10.0.1.3, y/a 10.0.2.1 … z/c 10.0.3.3.
    """
    objects: list[Obj] = []
    for ns_index, ns in enumerate("xyz", start=1):
        objects.append(namespace(ns, ns=ns))
        for pod_index, name in enumerate("abc", start=1):
            objects.append(pod(ns, name, f"10.0.{ns_index}.{pod_index}", {"pod": name}, SERVE_PORTS))
    return objects


@dataclass(frozen=True)
class Table:
    """One truth table: the protocol and port, and the expected verdict of every (source, destination)."""

    protocol: str
    port: int
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    expected: dict[tuple[str, str], bool] = field(hash=False)


def read_table(text: str) -> Table:
    """Parse a truth table (see the module docstring)."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    protocol, _, port = header[0].partition("/")
    destinations = tuple(header[1:])
    expected: dict[tuple[str, str], bool] = {}
    sources = []
    for row in rows:
        source, marks = row[0], row[1:]
        if len(marks) != len(destinations):
            raise ValueError(f"row {source} has {len(marks)} marks for {len(destinations)} destinations")
        sources.append(source)
        for destination, mark in zip(destinations, marks, strict=True):
            if mark not in ("X", "."):
                raise ValueError(f"mark {mark!r} in row {source}: use X (allowed) or . (denied)")
            expected[(source, destination)] = mark == "X"
    return Table(protocol, int(port), tuple(sources), destinations, expected)


@dataclass(frozen=True)
class Scenario:
    """A cluster and its expected reachability, one table per protocol/port."""

    name: str
    objects: list[Obj] = field(hash=False)
    tables: tuple[str, ...]


def mismatches(scenario: Scenario) -> list[str]:
    """Every cell where the evaluator disagrees with the table, plus coverage problems."""
    cluster: Cluster = cluster_from_objects(scenario.objects)
    everyone = sorted(str(p.ref) for p in cluster.pods)
    problems: list[str] = []
    for text in scenario.tables:
        table = read_table(text)
        if sorted(table.sources) != everyone or sorted(table.destinations) != everyone:
            problems.append(f"{table.protocol}/{table.port}: the table does not cover exactly {everyone}")
            continue
        for (source, destination), allowed in table.expected.items():
            src_ns, _, src_name = source.partition("/")
            dst_ns, _, dst_name = destination.partition("/")
            src, dst = cluster.pod(src_ns, src_name), cluster.pod(dst_ns, dst_name)
            assert src is not None and dst is not None
            decision = evaluate(cluster, src, dst, table.port, table.protocol)
            if decision.allowed != allowed:
                want = "allowed" if allowed else "denied"
                got = "allowed" if decision.allowed else "denied"
                problems.append(
                    f"{table.protocol}/{table.port} {source} -> {destination}: expected {want}, got {got} "
                    f"(egress: {decision.egress.reason}; ingress: {decision.ingress.reason})"
                )
    return problems
