"""The agent's Prometheus series: RPC latency and errors per method, and how full the node's conntrack table is.

One `AgentMetrics` per process (tests make their own), with its own registry. The server reports
each finished RPC (`rpc_finished`); the conntrack series are read when Prometheus scrapes, from the
function given (the agent passes `NodeChecks.conntrack_stats`), so a scrape always sees the table as
it is, at the cost of one netlink dump of counters per scrape. `exposition()` renders the registry
for `/metrics` on the agent's metrics port (deploy/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nodeagent.checks.conntrack import ConntrackStats
from nodeagent.errors import AgentError

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
"""Seconds: one RPC, from a cached rule walk (sub-millisecond) to a probe or a big conntrack dump."""


class ConntrackFill(Collector):
    """Reads the conntrack count and limit at scrape time; a failed read leaves the series out and is counted.

    The failure counter belongs to this collector, so the scrape that failed already shows it.
    """

    def __init__(self, read: Callable[[], ConntrackStats]) -> None:
        """`read` returns the node's `ConntrackStats` (raising `AgentError` when it cannot)."""
        self._read = read
        self.read_errors = Counter(
            "kubereach_agent_conntrack_read_errors", "Scrapes at which the conntrack table could not be read.", registry=None
        )

    def describe(self) -> Iterator[Metric]:
        """The families this collector yields (so registering it does not run a read)."""
        yield from self._families()
        yield from self.read_errors.describe()

    def collect(self) -> Iterator[Metric]:
        """The current count, limit and fill ratio of the node's conntrack table, and the failed reads so far."""
        try:
            stats = self._read()
        except AgentError:
            self.read_errors.inc()
        else:
            count, limit, ratio = self._families()
            count.add_metric([], stats.count)
            limit.add_metric([], stats.max)
            ratio.add_metric([], stats.count / stats.max if stats.max > 0 else 0.0)
            yield from (count, limit, ratio)
        yield from self.read_errors.collect()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily("kubereach_agent_conntrack_entries", "Entries in the node's conntrack table."),
            GaugeMetricFamily("kubereach_agent_conntrack_max", "The node's conntrack table limit (nf_conntrack_max)."),
            GaugeMetricFamily(
                "kubereach_agent_conntrack_fill_ratio", "Entries divided by the limit (1.0: new flows are dropped)."
            ),
        )


class AgentMetrics:
    """The agent's series in a registry of their own."""

    def __init__(
        self, conntrack_stats: Callable[[], ConntrackStats] | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        """Create the RPC series; with `conntrack_stats`, also the conntrack fill series read at scrape time."""
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.rpc_seconds = Histogram(
            "kubereach_agent_rpc_duration_seconds",
            "Time the agent took to answer one RPC, by method.",
            ["method"],
            buckets=RPC_BUCKETS,
            registry=self.registry,
        )
        self.rpc_errors = Counter(
            "kubereach_agent_rpc_errors",
            "RPCs answered with an error status, by method and gRPC status code.",
            ["method", "code"],
            registry=self.registry,
        )
        if conntrack_stats is not None:
            self.registry.register(ConntrackFill(conntrack_stats))

    def rpc_finished(self, method: str, seconds: float, code: str | None = None) -> None:
        """Record one RPC's duration; `code` is the gRPC status name when it failed (``INVALID_ARGUMENT``...)."""
        self.rpc_seconds.labels(method=method).observe(max(seconds, 0.0))
        if code is not None and code != "OK":
            self.rpc_errors.labels(method=method, code=code).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type, for `/metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
