"""`python -m lab.kubeproxy`: one simulated node's kube-proxy.

    python -m lab.kubeproxy --node NAME --node-ip IP --netns NS --api URL --token-file FILE [--ca-file PEM] \
        --mode iptables|nftables --cluster-cidr CIDR --status-file PATH \
        [--nft-layout 1.36|endpoint-chains|single-endpoint] \
        [--service-cidr CIDR ...] [--min-sync-period SECONDS] [--sync-period SECONDS] [--verbose]

Logs go to stderr. SIGTERM or SIGINT ends it with exit code 0; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from lab.errors import LabError
from lab.kubeproxy.apply import sync_iptables, sync_nftables
from lab.kubeproxy.healthcheck import HealthChecks
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT, NFT_LAYOUTS, NodeContext
from lab.kubeproxy.watch import KubeApi, NodeProxy, Object, ProxySettings, log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab.kubeproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True, help="node name (endpoints with this nodeName are local)")
    parser.add_argument("--node-ip", required=True, help="the node's IPv4 address")
    parser.add_argument("--netns", required=True, help="the node's network namespace")
    parser.add_argument("--api", required=True, help="API server base URL (https, or plain http)")
    parser.add_argument("--token-file", required=True, type=Path, help="file with the bearer token")
    parser.add_argument("--ca-file", type=Path, help="CA certificate that issued the API server's (for https)")
    parser.add_argument("--mode", required=True, choices=("iptables", "nftables"))
    parser.add_argument("--cluster-cidr", required=True, help="pod CIDR of the cluster, e.g. 10.244.0.0/16")
    parser.add_argument("--status-file", required=True, type=Path, help="JSON status written after each sync")
    parser.add_argument("--service-cidr", action="append", default=[], help="service CIDR (repeatable)")
    parser.add_argument(
        "--nft-layout",
        choices=NFT_LAYOUTS,
        default=DEFAULT_NFT_LAYOUT,
        help="nftables mode: the kube-proxy layout to imitate (default %(default)s)",
    )
    parser.add_argument("--min-sync-period", type=float, default=0.1, help="seconds between syncs at most")
    parser.add_argument(
        "--sync-period", type=float, default=0.0, help="full re-sync at least this often, in seconds (default 0: only on changes)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every watch event")
    return parser


def settings_from_args(argv: Sequence[str]) -> tuple[ProxySettings, bool]:
    """Parse and check the command line: (settings, verbose)."""
    args = _parser().parse_args(argv)
    try:
        ipaddress.IPv4Address(args.node_ip)
        ipaddress.IPv4Network(args.cluster_cidr)
        for cidr in args.service_cidr:
            ipaddress.IPv4Network(cidr)
    except ValueError as exc:
        raise LabError(f"bad address argument: {exc}", exit_code=2) from exc
    return ProxySettings(
        node_name=args.node,
        node_ip=args.node_ip,
        netns=args.netns,
        api_url=args.api,
        token_file=args.token_file,
        ca_file=args.ca_file,
        mode=args.mode,
        cluster_cidr=args.cluster_cidr,
        status_file=args.status_file,
        service_cidrs=tuple(args.service_cidr),
        nft_layout=args.nft_layout,
        min_sync_period=args.min_sync_period,
        sync_period=args.sync_period,
    ), bool(args.verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM; return the exit code."""
    try:
        settings, verbose = settings_from_args(sys.argv[1:] if argv is None else argv)
    except LabError as exc:
        print(f"kube-proxy: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s kube-proxy[{settings.node_name}] %(levelname)s %(message)s",
    )
    node = NodeContext(
        node_name=settings.node_name,
        node_ip=settings.node_ip,
        cluster_cidr=settings.cluster_cidr,
        service_cidrs=settings.service_cidrs,
        nft_layout=settings.nft_layout,
        ipv6=os.path.exists("/proc/sys/net/ipv6"),  # dual-stack kube-proxy writes the IPv6 side wherever IPv6 exists
    )

    health = HealthChecks(settings.netns, settings.node_name)

    def sync_rules(services: Sequence[Object], slices: Sequence[Object]) -> None:
        if settings.mode == "iptables":
            sync_iptables(settings.netns, services, slices, node)
        else:
            sync_nftables(settings.netns, services, slices, node)
        health.sync(services, slices)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        api = KubeApi(settings.api_url, settings.token_file, ca_file=settings.ca_file)
    except LabError as exc:
        print(f"kube-proxy: {exc}", file=sys.stderr)
        return exc.exit_code
    log.info(
        "starting in %s mode (nftables layout %s) for node %s (netns %s), API %s",
        settings.mode,
        settings.nft_layout,
        settings.node_name,
        settings.netns,
        settings.api_url,
    )
    try:
        NodeProxy(settings, api, sync_rules).run(stop)
    finally:
        health.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
