"""Memory of an agent-like process around a 262,144-entry conntrack query, next to `conntrack -L`'s.

    sudo .venv/bin/python bench/bench_agent_memory.py [--entries 262144]

Fills a throwaway namespace `kb-mem-…` to --entries (default nf_conntrack_max), then starts a fresh
Python process that imports the agent's table checks and reports VmRSS / VmHWM from /proc/self/status:
idle, after query_conntrack(no filter, limit=1000) (counts every entry, keeps 1,000), and after
query_conntrack(no filter, limit=entries) (keeps every entry as ConntrackEntry objects). The reference
is the peak RSS of `conntrack -L` over the same table (ru_maxrss of a child). Deleted in finally.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchkit import REPO, bench_netns, timed

from lab import conntrack_fill

_CHILD = """
import json, sys
from pathlib import Path

def status():
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM")}

from nodeagent.checks import conntrack, ctnetlink, filter, iptables_save, nat, netlink
from nodeagent.checks.nat import ipvs, nft_netlink, nftables
from nodeagent.netns import netns_path
path = netns_path(sys.argv[1])
report = {"idle": status()}
result = conntrack.query_conntrack(path, conntrack.ConntrackFilter(), 1000)
report["after_count_limit_1000"] = {**status(), "matched": result.total_matched}
del result
result = conntrack.query_conntrack(path, conntrack.ConntrackFilter(), int(sys.argv[2]))
report["after_all_entries_kept"] = {**status(), "kept": len(result.entries)}
print(json.dumps(report))
"""

_REFERENCE = """
import resource, subprocess, sys
subprocess.run(["nsenter", "--net=" + sys.argv[1], "conntrack", "-L"], stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as handle:
        default_max = int(handle.read())
    parser.add_argument("--entries", type=int, default=default_max)
    args = parser.parse_args()
    with bench_netns("mem") as name:
        took, count = timed(
            lambda: conntrack_fill.fill(name, args.entries, src_net="10.250.0.0/16", dst="10.252.0.1", protocol="tcp")
        )
        print(f"filled {name} to {count:,} entries in {took:.2f} s", flush=True)
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, name, str(count)], capture_output=True, text=True, cwd=REPO, check=True, timeout=300
        )
        figures = json.loads(child.stdout)
        reference = int(
            subprocess.run(
                [sys.executable, "-c", _REFERENCE, f"/var/run/netns/{name}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            ).stdout
        )
        idle = figures["idle"]
        counted = figures["after_count_limit_1000"]
        kept = figures["after_all_entries_kept"]
        print(f"agent idle (checks imported)                     VmRSS {idle['VmRSS']:5d} MiB  VmHWM {idle['VmHWM']:5d} MiB")
        print(
            f"after query {counted['matched']:,} entries, limit 1,000        VmRSS {counted['VmRSS']:5d} MiB  "
            f"VmHWM {counted['VmHWM']:5d} MiB  (+{counted['VmHWM'] - idle['VmHWM']} MiB peak)"
        )
        print(
            f"after query keeping all {kept['kept']:,} entries     VmRSS {kept['VmRSS']:5d} MiB  "
            f"VmHWM {kept['VmHWM']:5d} MiB  (+{kept['VmHWM'] - idle['VmHWM']} MiB peak)"
        )
        print(f"reference: conntrack -L over the same table      peak RSS {reference:5d} MiB", flush=True)


if __name__ == "__main__":
    main()
