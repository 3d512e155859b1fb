"""Small questions the bot asks the API besides resolving a question: the cluster DNS service's
endpoints and the upstream its Corefile forwards to, and whether a bot pod of a given name still
exists in this bot's namespace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.cluster.client import ClusterClient
from bot.cluster.corefile import forward_upstreams
from bot.cluster.errors import ClusterUnavailable
from bot.cluster.models import EndpointInfo, endpoints_of_slice
from bot.cluster.resources import CONFIG_MAPS, ENDPOINT_SLICES, PODS, ObjectReader
from bot.settings import BotSettings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DNS_SERVICE_SELECTOR = "kubernetes.io/service-name=kube-dns"
COREFILE_CONFIG_MAP = ("kube-system", "coredns")


def dns_endpoints(reader: ObjectReader) -> list[EndpointInfo]:
    """The endpoints of the cluster DNS service (kube-system/kube-dns), from its EndpointSlices."""
    slices = reader.list_objects(ENDPOINT_SLICES, "kube-system", label_selector=DNS_SERVICE_SELECTOR)
    return [e for obj in slices for e in endpoints_of_slice(obj)]


def dns_upstreams(reader: ObjectReader) -> tuple[str, ...]:
    """The resolvers the cluster DNS forwards names outside the cluster to, from the Corefile in
    kube-system/coredns; () when it forwards to its resolv.conf, or the ConfigMap is absent or cannot be
    read (not granted, another DNS server): the DNS pods' own resolv.conf is then asked instead."""
    namespace, name = COREFILE_CONFIG_MAP
    try:
        found = reader.get_object(CONFIG_MAPS, name, namespace)
    except ClusterUnavailable:
        return ()
    corefile = ((found or {}).get("data") or {}).get("Corefile")
    return forward_upstreams(corefile) if isinstance(corefile, str) else ()


def bot_pod_check(settings: BotSettings) -> Callable[[str], bool | None] | None:
    """In a cluster (in-cluster configuration), a check whether a bot pod of a given name still exists
    in this bot's namespace — how investigations of a replica that is gone are found. None elsewhere."""
    if settings.kubeconfig is not None:
        return None
    try:
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return None
    if not namespace:
        return None

    def exists(pod_name: str) -> bool | None:
        try:
            with ClusterClient.in_cluster() as client:
                return client.get_object(PODS, pod_name, namespace) is not None
        except ClusterUnavailable:
            return None

    return exists
