"""`kubereach policy check`: judge one flow against NetworkPolicies read from manifest files, offline."""

from __future__ import annotations

import difflib
import ipaddress
import json
from pathlib import Path

import click

from bot.errors import BadInput
from bot.policy.evaluate import Endpoint, evaluate, explain
from bot.policy.manifests import load_cluster
from bot.policy.models import Cluster, PolicyDecision, Protocol, decision_as_dict, endpoint_text

_SUGGESTIONS = 3


def _nearest_pods(cluster: Cluster, wanted: str) -> list[str]:
    names = [str(pod.ref) for pod in cluster.pods]
    prefixed = [name for name in names if name.startswith(wanted)]
    close = difflib.get_close_matches(wanted, names, n=_SUGGESTIONS, cutoff=0.4)
    ordered = list(dict.fromkeys(prefixed + close))
    return ordered[:_SUGGESTIONS]


def resolve_endpoint(cluster: Cluster, text: str, option: str) -> Endpoint:
    """`NS/POD` (or `POD` in `default`) as a pod of `cluster`, or an IP (the pod owning it, if any)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        owner = cluster.pod_by_ip(ip)
        return owner if owner is not None else ip
    namespace, _, name = text.rpartition("/")
    namespace = namespace or "default"
    if not name or "/" in namespace:
        raise BadInput(f"{option} {text!r} is not NAMESPACE/POD or an IP address; e.g. {option} shop/api-7d9f-x2")
    pod = cluster.pod(namespace, name)
    if pod is not None:
        return pod
    wanted = f"{namespace}/{name}"
    nearest = _nearest_pods(cluster, wanted)
    if nearest:
        raise BadInput(f"{option}: no pod {wanted} in the manifests; nearest: {', '.join(nearest)}")
    if not cluster.pods:
        raise BadInput(f"{option}: no pod {wanted}: the manifests hold no pods at all; add the pods' manifests")
    raise BadInput(f"{option}: no pod {wanted} in the manifests and none with a similar name")


def resolve_port(text: str, destination: Endpoint, protocol: Protocol) -> int:
    """A port number, or a container port name looked up on the destination pod."""
    if text.isdigit():
        number = int(text)
        if 1 <= number <= 65535:
            return number
        raise BadInput(f"--port {text} is out of range; use a number from 1 to 65535 or a named port")
    if not text or isinstance(destination, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise BadInput(f"--port {text!r} is not a number; named ports only work when --to is a pod")
    numbers = destination.named_port(text, protocol)
    if not numbers:
        declared = ", ".join(f"{p.name}={p.protocol}/{p.port}" for p in destination.ports if p.name) or "none"
        raise BadInput(
            f"--port {text!r}: {endpoint_text(destination)} declares no {protocol} port of that name (named ports: {declared})"
        )
    return numbers[0]


MAX_ADDRESSES = 16
"""Most addresses one `--to NAME` is judged for (a name rarely resolves to more)."""


def _looks_like_name(text: str) -> bool:
    """A DNS name outside the cluster (example.com, api.github.com.), not NAMESPACE/POD or an IP."""
    return "/" not in text and "." in text.strip(".") and not text.replace(".", "").isdigit()


def external_addresses(
    destination_text: str, addresses: tuple[str, ...]
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    """The addresses `--address` gives for `--to NAME`, parsed; one clear error for anything else."""
    if not addresses:
        raise BadInput(
            f"--to {destination_text!r} is a name: policy check works on addresses; "
            f"give the addresses it resolves to, e.g. --to {destination_text} --address 203.0.113.10 "
            f"(`dig +short {destination_text}` lists them)"
        )
    if len(addresses) > MAX_ADDRESSES:
        raise BadInput(f"--address given {len(addresses)} times; at most {MAX_ADDRESSES}")
    parsed = []
    for text in addresses:
        try:
            parsed.append(ipaddress.ip_address(text.strip()))
        except ValueError:
            raise BadInput(f"--address {text[:64]!r} is not an IP address; e.g. --address 203.0.113.10") from None
    return tuple(dict.fromkeys(parsed))


def render_text(decision: PolicyDecision) -> str:
    """The decision for a terminal: a headline and one line per direction."""
    flow = decision.flow
    verdict = "ALLOWED" if decision.allowed else "DENIED"
    lines = [f"{verdict}  {endpoint_text(flow.source)} → {endpoint_text(flow.destination)} on {flow.port_text}"]
    for direction in (decision.egress, decision.ingress):
        state = "allows" if direction.allowed else "DENIES"
        lines.append(f"  {direction.direction.lower():<7} {state}: {direction.reason}")
    return "\n".join(lines)


@click.group()
def policy() -> None:
    """Judge flows against Kubernetes NetworkPolicies, offline, from manifest files."""


@policy.command()
@click.option(
    "--manifests",
    "manifest_paths",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A YAML/JSON file or directory of Namespaces, Pods and NetworkPolicies (repeatable; "
    "`kubectl get ns,pods,networkpolicies -A -o yaml` writes one).",
)
@click.option("--from", "source_text", required=True, help="Source: NAMESPACE/POD or an IP.")
@click.option(
    "--to",
    "destination_text",
    required=True,
    help="Destination: NAMESPACE/POD, an IP, or a name outside the cluster (with --address).",
)
@click.option(
    "--address",
    "addresses",
    multiple=True,
    help="With --to NAME: an address the name resolves to (repeatable); each is judged (egress ipBlocks).",
)
@click.option("--port", "port_text", required=True, help="Destination port: a number or a named container port.")
@click.option(
    "--protocol",
    type=click.Choice([p.value for p in Protocol], case_sensitive=False),
    default=Protocol.TCP.value,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def check(
    *,
    manifest_paths: tuple[Path, ...],
    source_text: str,
    destination_text: str,
    addresses: tuple[str, ...],
    port_text: str,
    protocol: str,
    as_json: bool,
) -> None:
    """Would NetworkPolicy let --from reach --to on --port? Exit 0 once judged (allowed or not)."""
    try:
        cluster = load_cluster(manifest_paths)
        source = resolve_endpoint(cluster, source_text, "--from")
        proto = Protocol(protocol.upper())
        if addresses or (_looks_like_name(destination_text) and cluster.pod("default", destination_text) is None):
            ips = external_addresses(destination_text, addresses)
            port = resolve_port(port_text.strip(), ips[0], proto)
            decisions = [evaluate(cluster, source, ip, port, proto) for ip in ips]
        else:
            destination = resolve_endpoint(cluster, destination_text, "--to")
            port = resolve_port(port_text.strip(), destination, proto)
            decisions = [evaluate(cluster, source, destination, port, proto)]
    except BadInput as exc:
        # One line for people: fold the hint into the message.
        message = exc.message if not exc.hint else f"{exc.message} ({exc.hint})"
        raise BadInput(message) from None
    if len(decisions) > 1 or addresses:
        _echo_name(destination_text, decisions, as_json=as_json)
        return
    (decision,) = decisions
    if as_json:
        payload = decision_as_dict(decision)
        payload["explanation"] = explain(decision)
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(render_text(decision))


def _echo_name(name: str, decisions: list[PolicyDecision], *, as_json: bool) -> None:
    """The decisions for each address of `--to NAME`: allowed only when every address is."""
    allowed = all(d.allowed for d in decisions)
    if as_json:
        judged = []
        for decision in decisions:
            payload = decision_as_dict(decision)
            payload["explanation"] = explain(decision)
            judged.append(payload)
        click.echo(json.dumps({"name": name, "allowed": allowed, "addresses": judged}, indent=2))
        return
    denied = sum(1 for d in decisions if not d.allowed)
    head = "ALLOWED" if allowed else "DENIED"
    click.echo(f"{head}  {name}: {denied} of {len(decisions)} address(es) denied")
    for decision in decisions:
        click.echo(render_text(decision))
