"""NAT lookup speed on a big rule set: service_nat cold and warm vs the dump tools, same run.

    sudo .venv/bin/python bench/bench_nat.py [--services 10000] [--endpoints 3] [--warm 1000]

Modes: iptables, nftables (the per-endpoint-chain layout) and nftables-1.36 (`dnat ip to numgen random
mod N map {…}`, kube-proxy 1.36). For each mode it writes --services ClusterIP services x --endpoints endpoints, shaped as kube-proxy
writes them (bench/kubeproxy_scale.py), into a throwaway namespace `kb-nat-…` / `kb-nft-…`, then:

- cold: one service_nat lookup with an empty cache (mode detection, the dump, parsing, the walk)
        vs `iptables-save -t nat` / `nft -j list table ip kube-proxy` alone (median of --runs);
- warm: the mean of --warm lookups of random services with the rules unchanged (served from the
        cache after one generation-id check) vs the same dump tool;
- list: list_service_nat over the whole rule set, warm (the snapshot the lookups left) and cold
        (the cache cleared: the dump, its parsing and the listing).

Namespaces are deleted in finally.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time

from benchkit import bench_netns, median_time, report, run_tool, timed
from kubeproxy_scale import iptables_restore, nft_script, service_vip

from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path

TABLES = KubeProxyTables()
"""The agent's kube-proxy tables with their snapshot cache (one per agent, as in `KernelChecks`)."""


def _cold(path: str, vip: str) -> None:
    TABLES.clear_cache()
    result = TABLES.service_nat(path, None, vip, 80, "TCP")
    assert result.programmed and result.endpoints, result


def _warm(path: str, services: int, lookups: int) -> float:
    rng = random.Random(7)
    TABLES.service_nat(path, None, service_vip(0), 80, "TCP")
    before = TABLES.tool_invocations()
    start = time.perf_counter()
    for _ in range(lookups):
        result = TABLES.service_nat(path, None, service_vip(rng.randrange(services)), 80, "TCP")
        assert result.programmed
    elapsed = (time.perf_counter() - start) / lookups
    assert TABLES.tool_invocations() == before, "warm lookups re-ran a tool"
    return elapsed


def bench_mode(mode: str, services: int, endpoints: int, runs: int, warm: int) -> None:
    with bench_netns("nat" if mode == "iptables" else "nft") as name:
        path = netns_path(name)
        if mode == "iptables":
            text = iptables_restore(services, endpoints)
            applied, _ = timed(
                lambda: subprocess.run(
                    ["ip", "netns", "exec", name, "iptables-restore"], input=text, text=True, check=True, timeout=900
                )
            )
            reference = ["nsenter", f"--net={path}", "iptables-save", "-t", "nat"]
            ref_name = "iptables-save -t nat"
        else:
            script = nft_script(services, endpoints, "numgen-dnat-map" if mode == "nftables-1.36" else "endpoint-chains")
            applied, _ = timed(
                lambda: subprocess.run(
                    ["ip", "netns", "exec", name, "nft", "-f", "-"], input=script, text=True, check=True, timeout=900
                )
            )
            reference = ["nsenter", f"--net={path}", "nft", "-j", "list", "table", "ip", "kube-proxy"]
            ref_name = "nft -j list table"
        print(f"{mode}: wrote {services:,} services x {endpoints} endpoints into {name} in {applied:.1f} s", flush=True)
        vip = service_vip(services // 2)
        ref = median_time(lambda: run_tool(reference), runs)
        report(
            f"{mode}: service_nat cold (detect + targeted reads + walk (full dump continues in the background))",
            median_time(lambda: _cold(path, vip), runs),
            ref,
            ref_name,
        )
        report(f"{mode}: service_nat warm (cached, mean of {warm})", _warm(path, services, warm), ref, ref_name)
        listed, found = timed(lambda: TABLES.list_service_nat(path, None))
        report(f"{mode}: list_service_nat ({len(found):,} services, warm)", listed, ref, ref_name)
        TABLES.clear_cache()
        listed, found = timed(lambda: TABLES.list_service_nat(path, None))
        report(f"{mode}: list_service_nat ({len(found):,} services, cold: dump + parse + list)", listed, ref, ref_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=1000)
    parser.add_argument("--modes", default="iptables,nftables", help="iptables, nftables (endpoint chains), nftables-1.36")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        bench_mode(mode, args.services, args.endpoints, args.runs, args.warm)


if __name__ == "__main__":
    main()
