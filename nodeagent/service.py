"""The agent's use cases as plain functions over one node: what each RPC asks of the kernel.

`NodeChecks` is the seam the gRPC servicer calls (tests inject a recording implementation);
`KernelChecks` is the real one. Arguments arrive validated. Errors of the check modules written by
others (conntrack, NAT, filter) are converted here into the agent's own errors.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from nodeagent.checks import capture as packet_capture
from nodeagent.checks import conntrack, dataplane, dns, egress, locate, nodeinfo, probe, routes, sockets
from nodeagent.checks import filter as packet_filter
from nodeagent.checks.conntrack import ConntrackFilter, ConntrackQueryError, ConntrackQueryResult, ConntrackStats
from nodeagent.checks.filter import FilterState
from nodeagent.checks.nat import KubeProxyTables, NatStateError, ServiceNat
from nodeagent.errors import (
    AgentError,
    InvalidRequest,
    KernelQueryFailed,
    NamespaceUnknown,
    NodeNamespaceMissing,
)
from nodeagent.netns import NamespaceNotFound, netns_inode, netns_path

T = TypeVar("T")


def agent_version() -> str:
    """The installed kubereach version, or "unknown" when running from a bare checkout."""
    try:
        return importlib.metadata.version("kubereach")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class NodeInfo:
    """Everything GetNodeInfo reports; `proxy_mode` and `conntrack` are None when unreadable."""

    node_name: str
    hostname: str
    kernel_release: str
    agent_version: str
    netns_name: str | None
    netns_inode: int
    cni: nodeinfo.CniShape
    ip_forward: bool
    proxy_mode: str | None
    conntrack: ConntrackStats | None
    dataplane: dataplane.Dataplane
    """Who does service NAT on the node ("" with a reason when the signs could not be read)."""


@dataclass(frozen=True)
class NamespaceTarget:
    """Which namespace a check runs in: a pod's (by IP), a named one, or the node's (neither)."""

    pod_ip: str | None = None
    netns_name: str | None = None


NODE = NamespaceTarget()


class NodeChecks(Protocol):
    """What the servicer can ask of a node. Every method blocks; the server runs it off the event loop."""

    def node_info(self) -> NodeInfo: ...
    def locate_pod(self, pod_ip: str) -> locate.PodLocation: ...
    def lookup_route(
        self, where: NamespaceTarget, destination: str, source: str | None, iif: str | None
    ) -> routes.RouteLookup: ...
    def service_nat(self, vip: str, port: int, protocol: str) -> ServiceNat: ...
    def entry_nat(self, entry: str, address: str, port: int, protocol: str) -> ServiceNat: ...
    def list_service_nat(self) -> tuple[ServiceNat, ...]: ...
    def query_conntrack(self, flt: ConntrackFilter, limit: int) -> ConntrackQueryResult: ...
    def conntrack_stats(self) -> ConntrackStats: ...
    def filter_state(self, src: str, dst: str, protocol: str, dport: int | None, interfaces: Sequence[str]) -> FilterState: ...
    def egress_nat(self, pod_ip: str, destination: str, protocol: str, port: int | None) -> egress.EgressNat: ...
    def list_sockets(
        self, where: NamespaceTarget, port: int | None, protocol: str | None
    ) -> tuple[sockets.ListeningSocket, ...]: ...
    def probe_tcp(
        self, where: NamespaceTarget, target_ip: str, port: int, timeout: float, source_port: int | None
    ) -> probe.ProbeResult: ...
    def probe_udp(
        self,
        where: NamespaceTarget,
        target_ip: str,
        port: int,
        timeout: float,
        payload: bytes,
        source_port: int | None,
        datagram_size: int | None,
    ) -> probe.ProbeResult: ...
    def probe_dns(
        self, where: NamespaceTarget, name: str, record_type: str, server: str | None, timeout: float
    ) -> dns.DnsProbeResult: ...
    def capture(
        self,
        points: Sequence[packet_capture.PointRequest],
        spec: packet_capture.CaptureMatchSpec,
        limits: packet_capture.CaptureLimits,
        session: packet_capture.CaptureSession,
        on_armed: Callable[[int], None],
    ) -> packet_capture.CaptureOutcome: ...


def _foreign(what: str, call: Callable[[], T]) -> T:
    """Run a check written against agent-interfaces.md, converting its errors into ours."""
    try:
        return call()
    except AgentError:
        raise
    except (ConntrackQueryError, NatStateError) as exc:
        raise KernelQueryFailed(what, None, str(exc)) from exc
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    except OSError as exc:
        raise KernelQueryFailed(what, exc.errno, exc.strerror) from exc


class KernelChecks:
    """The real checks, against the node's namespace (`host_netns`, or the agent's own)."""

    def __init__(self, node_name: str, host_netns: str | None, bpffs: Path | None = None) -> None:
        self.node_name = node_name
        self.host_netns = host_netns
        self.bpffs = bpffs
        """Where pinned BPF maps are looked for (Cilium's load balancer); None: not looked for."""
        self.kube_proxy = KubeProxyTables()
        """kube-proxy's rules, with the snapshots read so far (reused while the ruleset is unchanged)."""

    @property
    def node_netns(self) -> str:
        """The path of the node's namespace; `NodeNamespaceMissing` when --host-netns vanished."""
        try:
            return netns_path(self.host_netns)
        except NamespaceNotFound as exc:
            raise NodeNamespaceMissing(f"the node namespace {self.host_netns!r} is gone: {exc}") from exc

    def _namespace_of(self, where: NamespaceTarget) -> tuple[str, locate.PodLocation | None]:
        if where.netns_name:
            try:
                return netns_path(where.netns_name), None
            except NamespaceNotFound as exc:
                raise NamespaceUnknown(str(exc)) from exc
        if not where.pod_ip:
            return self.node_netns, None
        pod = locate.locate_pod(self.node_netns, where.pod_ip)
        return pod.netns.path, pod

    def node_info(self) -> NodeInfo:
        """The node's identity, CNI shape, kube-proxy mode, service dataplane, ip_forward and conntrack statistics."""
        path = self.node_netns
        state = nodeinfo.read_node_namespace(path)
        hostname, release = nodeinfo.host_identity()
        try:
            proxy_mode: str | None = self._detect_proxy_mode(path)
        except AgentError:
            proxy_mode = None
        try:
            stats: ConntrackStats | None = self.conntrack_stats()
        except AgentError:
            stats = None
        try:
            plane = dataplane.detect(path, proxy_mode, self.bpffs)
        except AgentError as exc:
            plane = dataplane.Dataplane("", (f"the dataplane could not be read: {exc}"[:200],))
        return NodeInfo(
            node_name=self.node_name,
            hostname=hostname,
            kernel_release=release,
            agent_version=agent_version(),
            netns_name=self.host_netns,
            netns_inode=netns_inode(path),
            cni=state.cni,
            ip_forward=state.ip_forward,
            proxy_mode=proxy_mode,
            conntrack=stats,
            dataplane=plane,
        )

    def _detect_proxy_mode(self, path: str) -> str:
        return str(_foreign("detecting kube-proxy's mode", lambda: self.kube_proxy.detect_proxy_mode(path, self.host_netns)))

    def locate_pod(self, pod_ip: str) -> locate.PodLocation:
        """Where the pod with this IP lives on this node."""
        return locate.locate_pod(self.node_netns, pod_ip)

    def lookup_route(self, where: NamespaceTarget, destination: str, source: str | None, iif: str | None) -> routes.RouteLookup:
        """`ip route get` in the node's or the pod's namespace."""
        path, _ = self._namespace_of(where)
        return routes.lookup_route(path, destination, source, iif)

    def service_nat(self, vip: str, port: int, protocol: str) -> ServiceNat:
        """kube-proxy's NAT for one service port on this node."""
        path = self.node_netns
        return _foreign(
            "reading kube-proxy's rules", lambda: self.kube_proxy.service_nat(path, self.host_netns, vip, port, protocol)
        )

    def entry_nat(self, entry: str, address: str, port: int, protocol: str) -> ServiceNat:
        """How kube-proxy on this node dispatches a client outside the cluster through a NodePort on
        `address`, an external IP or a load balancer IP."""
        path = self.node_netns
        return _foreign(
            "reading kube-proxy's rules",
            lambda: self.kube_proxy.entry_nat(path, self.host_netns, entry, address, port, protocol),
        )

    def list_service_nat(self) -> tuple[ServiceNat, ...]:
        """Every service port kube-proxy programmed on this node."""
        path = self.node_netns
        return _foreign("reading kube-proxy's rules", lambda: self.kube_proxy.list_service_nat(path, self.host_netns))

    def query_conntrack(self, flt: ConntrackFilter, limit: int) -> ConntrackQueryResult:
        """Matching conntrack entries of the node's namespace."""
        path = self.node_netns
        return _foreign("reading the conntrack table", lambda: conntrack.query_conntrack(path, flt, limit))

    def conntrack_stats(self) -> ConntrackStats:
        """The node's conntrack count, limit and counters."""
        path = self.node_netns
        return _foreign("reading conntrack statistics", lambda: conntrack.read_conntrack_stats(path))

    def filter_state(self, src: str, dst: str, protocol: str, dport: int | None, interfaces: Sequence[str]) -> FilterState:
        """The node's forwarding filter for one flow."""
        path = self.node_netns
        return _foreign(
            "reading the filter table",
            lambda: packet_filter.filter_state(self.kube_proxy, path, self.host_netns, src, dst, protocol, dport, interfaces),
        )

    def egress_nat(self, pod_ip: str, destination: str, protocol: str, port: int | None) -> egress.EgressNat:
        """Would the node's nat POSTROUTING translate the pod's packet to `destination` (leaving by its route)?

        The pod must be on this node (`PodNotFound` otherwise): only its own node masquerades it."""
        path = self.node_netns
        locate.locate_pod(path, pod_ip)
        lookup = routes.lookup_route(path, destination)
        out = lookup.route.device if lookup.error is None and lookup.route.device else None
        flow = egress.EgressFlow(pod_ip, destination, protocol, port, out)
        return _foreign("reading the nat rules", lambda: egress.egress_nat(self.kube_proxy, path, flow))

    def list_sockets(self, where: NamespaceTarget, port: int | None, protocol: str | None) -> tuple[sockets.ListeningSocket, ...]:
        """Listening sockets of the node's or the pod's namespace."""
        path, _ = self._namespace_of(where)
        return sockets.list_listening_sockets(path, port, protocol)

    def probe_tcp(
        self, where: NamespaceTarget, target_ip: str, port: int, timeout: float, source_port: int | None
    ) -> probe.ProbeResult:
        """One TCP connect from the node's or the pod's namespace (from `source_port` when given)."""
        path, _ = self._namespace_of(where)
        return probe.probe_tcp(path, target_ip, port, timeout, source_port)

    def probe_udp(
        self,
        where: NamespaceTarget,
        target_ip: str,
        port: int,
        timeout: float,
        payload: bytes,
        source_port: int | None,
        datagram_size: int | None,
    ) -> probe.ProbeResult:
        """One UDP datagram (padded with don't-fragment to `datagram_size`) and a wait for a reply,
        from the node's or the pod's namespace."""
        path, _ = self._namespace_of(where)
        return probe.probe_udp(path, target_ip, port, timeout, payload, source_port, datagram_size)

    def capture(
        self,
        points: Sequence[packet_capture.PointRequest],
        spec: packet_capture.CaptureMatchSpec,
        limits: packet_capture.CaptureLimits,
        session: packet_capture.CaptureSession,
        on_armed: Callable[[int], None],
    ) -> packet_capture.CaptureOutcome:
        """Watch interfaces of the node's and pods' namespaces for a marked probe's packets."""

        def resolve(point: packet_capture.PointRequest) -> str:
            return self._namespace_of(NamespaceTarget(pod_ip=point.pod_ip, netns_name=point.netns_name))[0]

        return packet_capture.run_capture(points, resolve, spec, limits, session, on_armed)

    def probe_dns(
        self, where: NamespaceTarget, name: str, record_type: str, server: str | None, timeout: float
    ) -> dns.DnsProbeResult:
        """A DNS resolution from the node's or the pod's namespace, through its resolv.conf by default."""
        path, pod = self._namespace_of(where)
        resolver = None
        if not server:
            if pod is not None:
                conf = dns.resolv_conf_path(pod.netns.name, pod.netns.pid)
            else:
                conf = dns.resolv_conf_path(where.netns_name or self.host_netns, None)
            resolver = dns.read_resolver_config(conf)
        return dns.probe_dns(path, name, record_type, timeout, server, resolver)
