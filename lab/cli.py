"""`kubereach lab …` and `kubereach demo`: the lab from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lab.errors import LabError
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT, NFT_LAYOUTS
from lab.plan import CNI_MODES, MAX_NODES, PROXY_MODES, LabOptions
from lab.state import validate_prefix


class _LabGroup(click.Group):
    """Turns LabError into one line and the right exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            click.echo(f"kubereach lab: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=_LabGroup)
@click.option(
    "--prefix", default="kr", envvar="KUBEREACH_LAB_PREFIX", show_default=True, help="Instance prefix of every lab name."
)
@click.pass_context
def lab(ctx: click.Context, prefix: str) -> None:
    """The lab: a simulated cluster in network namespaces on this machine (needs root)."""
    ctx.ensure_object(dict)
    try:
        ctx.obj["prefix"] = validate_prefix(prefix)
    except LabError as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix") from exc


@lab.command()
@click.option("--nodes", type=click.IntRange(1, MAX_NODES), default=3, show_default=True)
@click.option("--cni", type=click.Choice(CNI_MODES), default="flannel-vxlan", show_default=True)
@click.option("--proxy", type=click.Choice(PROXY_MODES), default="iptables", show_default=True)
@click.option(
    "--kube-proxy-layout",
    type=click.Choice(NFT_LAYOUTS),
    default=DEFAULT_NFT_LAYOUT,
    envvar="KUBEREACH_LAB_KUBE_PROXY_LAYOUT",
    show_default=True,
    help="nftables mode: the kube-proxy rule layout to imitate (1.36; endpoint-chains: per-endpoint chains and a "
    "numgen vmap, as up to the mid 1.3x releases; single-endpoint: 1.37's plain dnat for one endpoint).",
)
@click.option("--spec", "spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Cluster spec YAML.")
@click.option(
    "--kubernetes",
    "kubernetes_dir",
    envvar="KUBEREACH_LAB_KUBERNETES",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run the control plane on the official release binaries in this directory "
    "(kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl, etcd).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON when up.")
@click.pass_context
def up(
    ctx: click.Context,
    nodes: int,
    cni: str,
    proxy: str,
    kube_proxy_layout: str,
    spec_file: Path | None,
    kubernetes_dir: Path | None,
    as_json: bool,
) -> None:
    """Build the lab, start its API server, kube-proxies, pods and agents."""
    from lab import lifecycle

    options = LabOptions(
        prefix=ctx.obj["prefix"],
        nodes=nodes,
        cni=cni,  # type: ignore[arg-type]
        proxy=proxy,  # type: ignore[arg-type]
        kube_proxy_layout=kube_proxy_layout,  # type: ignore[arg-type]
    )
    result = lifecycle.up(options, spec_file, kubernetes=kubernetes_dir)
    if as_json:
        click.echo(json.dumps(lifecycle.status(options.prefix), indent=2))
        return
    status = lifecycle.status(options.prefix)
    layout = f" {kube_proxy_layout} layout" if proxy == "nftables" else ""
    click.echo(
        f"lab {options.prefix} is up in {result.seconds:.1f} s on Kubernetes {status['kubernetes']}: "
        f"{len(status['nodes'])} nodes ({cni}, kube-proxy {proxy}{layout}), "
        f"{len(status['pods'])} pods, {len(status['services'])} services"
    )
    click.echo(f"config: {status['config']}")
    click.echo(f"kubectl: kubectl --kubeconfig {status['kubeconfig']} get pods -A")
    click.echo(f'ask:    kubereach --config {status["config"]} ask "why can\'t frontend reach api"')


@lab.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Remove every trace of the lab (safe to run twice, and after a crash)."""
    from lab import lifecycle

    removed = lifecycle.down(ctx.obj["prefix"])
    click.echo(
        f"lab {ctx.obj['prefix']} is down ({len(removed)} things removed)" if removed else f"no lab {ctx.obj['prefix']} was up"
    )


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (the contract in ARCHITECTURE.md).")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the lab's nodes, pods, services, agents and faults."""
    from lab import lifecycle
    from lab.state import require_state

    data = lifecycle.status(ctx.obj["prefix"])
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    state = require_state(ctx.obj["prefix"])
    layout = f" ({data['kube_proxy_layout']} layout)" if data["proxy"] == "nftables" else ""
    click.echo(
        f"lab {data['prefix']}: {data['cni']}, kube-proxy {data['proxy']}{layout}, API {data['api']} "
        f"(Kubernetes {data['kubernetes']})"
    )
    click.echo(f"config {data['config']}")
    if data.get("slack"):
        slack = data["slack"]
        running = "up" if slack["running"] else "DOWN"
        click.echo(f"slack  {slack['api']} channel {slack['channel']} user {slack['user']} ({running})")
    click.echo(f"kubeconfig {data['kubeconfig']}")
    for n in data["nodes"]:
        click.echo(f"  {n['name']:8} {n['ip']:12} pods {n['pod_cidr']:15} agent {n['agent'] or 'DOWN'}")
    for p in data["pods"]:
        click.echo(f"  pod {p['namespace']}/{p['name']:40} {p['ip']:13} {p['node']}")
    for s in data["services"]:
        ports = ", ".join(f"{p['port']}/{p['protocol']}" for p in s["ports"])
        # An ExternalName service has no cluster IP; a headless one has "None".
        address = s["cluster_ip"] or (f"-> {s['external_name']}" if s.get("external_name") else "-")
        click.echo(f"  svc {s['namespace']}/{s['name']:20} {address:15} {ports}")
    for f in state.faults:
        click.echo(f"  fault {f['name']}: {f['description']}")


def _add_slack() -> None:
    from lab.slack_cli import slack

    lab.add_command(slack)


_add_slack()


@lab.command()
def faults() -> None:
    """List the faults `lab fault NAME` can inject."""
    from lab.faults import CATALOG

    for fault in CATALOG.values():
        trace = " (found by the packet trace)" if fault.needs_trace else ""
        click.echo(f"{fault.name:24} {fault.verdict:30} {fault.summary}{trace}")


@lab.command()
@click.argument("name")
@click.option("--node", help="Node to break (default: a sensible one for the fault).")
@click.option("--pod", help="Pod (namespace/name or name) to break.")
@click.option("--service", help="Service (namespace/name or name) to break.")
@click.option("--from", "from_node", metavar="NODE", help="Node-network faults: the node the traffic leaves.")
@click.option("--to", "to_node", metavar="NODE", help="Node-network faults: the node the traffic goes to.")
@click.option("--percent", type=click.IntRange(1, 100), help="underlay-loss: the share of packets lost (default 30).")
@click.option("--mtu", type=click.IntRange(576, 1499), help="underlay-mtu: what the node network carries (default 1400).")
@click.pass_context
def fault(
    ctx: click.Context,
    name: str,
    node: str | None,
    pod: str | None,
    service: str | None,
    from_node: str | None,
    to_node: str | None,
    percent: int | None,
    mtu: int | None,
) -> None:
    """Break one thing the way it breaks in real clusters."""
    from lab.faults import FaultOptions, inject

    options = FaultOptions(node, pod, service, from_node, to_node, percent, mtu)
    applied = inject(ctx.obj["prefix"], name, options)
    click.echo(f"fault {applied['name']}: {applied['description']}")


@lab.command()
@click.argument("name", required=False)
@click.option("--node", help="Node to set it up on (default: the first node).")
@click.pass_context
def scenario(ctx: click.Context, name: str | None, node: str | None) -> None:
    """Set up a real-world scenario that is not a fault (`lab heal` undoes it); without NAME, list them."""
    from lab.faults.catalog import start_scenario
    from lab.faults.scenarios import SCENARIOS

    if name is None:
        for entry in SCENARIOS.values():
            click.echo(f"{entry.name:24} {entry.summary}")
        return
    started = start_scenario(ctx.obj["prefix"], name, node)
    click.echo(f"scenario {started['name']}: {started['description']}")


@lab.command()
@click.pass_context
def heal(ctx: click.Context) -> None:
    """Undo every injected fault."""
    from lab.faults import heal as heal_all

    healed = heal_all(ctx.obj["prefix"])
    click.echo(f"healed {len(healed)} fault(s)" + (": " + ", ".join(healed) if healed else ""))


@click.command()
@click.option("--prefix", default="kr", envvar="KUBEREACH_LAB_PREFIX", show_default=True)
@click.option(
    "--script", "script", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Run these lines non-interactively."
)
@click.option("--keep", is_flag=True, help="Leave the lab up when the demo ends.")
@click.option("--no-tour", is_flag=True, help="Skip the guided tour of three questions.")
def demo(prefix: str, script: Path | None, keep: bool, no_tour: bool) -> None:
    """Bring up the lab, the Slack app and a terminal channel; a guided tour first."""
    from lab.demo import run_demo

    try:
        run_demo(validate_prefix(prefix), script, keep=keep, tour=not no_tour)
    except LabError as exc:
        click.echo(f"kubereach demo: {exc}", err=True)
        raise SystemExit(exc.exit_code) from exc
