"""Where the kubereach agents listen: one per node, from the agent DaemonSet's pods.

In production the bot dials each agent pod's IP (hostNetwork, so the node's IP) on the agent port.
A pod may carry the `kubereach.io/agent-address` annotation to say where it really listens (the lab
runs every agent on 127.0.0.1 with its own port); the annotation wins when present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.cluster.models import metadata_of
from bot.cluster.resources import PODS, ObjectReader

AGENT_NAMESPACE = "kube-system"
AGENT_LABEL_SELECTOR = "app.kubernetes.io/name=kubereach-agent"
AGENT_PORT = 7443
AGENT_ADDRESS_ANNOTATION = "kubereach.io/agent-address"


def addresses_from_pods(pods: Iterable[Mapping[str, Any]], port: int = AGENT_PORT) -> dict[str, str]:
    """Node name -> "host:port" from agent pod dicts; pods without a node or an address are skipped.

    When two agent pods claim one node (a rollout), a Running one wins.
    """
    found: dict[str, tuple[bool, str]] = {}
    for pod in pods:
        spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
        status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
        assert isinstance(spec, Mapping) and isinstance(status, Mapping)
        node = spec.get("nodeName")
        if not isinstance(node, str) or not node:
            continue
        annotations = metadata_of(pod).get("annotations")
        annotated = annotations.get(AGENT_ADDRESS_ANNOTATION) if isinstance(annotations, Mapping) else None
        if isinstance(annotated, str) and annotated:
            address = annotated
        else:
            ip = status.get("podIP")
            if not isinstance(ip, str) or not ip:
                continue
            address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        running = status.get("phase") == "Running"
        current = found.get(node)
        if current is None or (running and not current[0]):
            found[node] = (running, address)
    return {node: address for node, (_running, address) in sorted(found.items())}


def agent_addresses(
    client: ObjectReader,
    *,
    namespace: str = AGENT_NAMESPACE,
    label_selector: str = AGENT_LABEL_SELECTOR,
    port: int = AGENT_PORT,
) -> dict[str, str]:
    """Node name -> "ip:port" of the agent on that node, from the agent DaemonSet's pods."""
    return addresses_from_pods(client.list_objects(PODS, namespace, label_selector=label_selector), port)
