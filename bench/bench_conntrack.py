"""Conntrack query speed on a full table: query_conntrack vs the `conntrack` tool, same run, same table.

    sudo .venv/bin/python bench/bench_conntrack.py [--entries 262144] [--vip-entries 2000] [--runs 5]

Fills a throwaway namespace `kb-ct-…` with lab/conntrack_fill.py to `--entries` (default: the
kernel's nf_conntrack_max, 262,144 here): `--vip-entries` UDP flows to the VIP 10.96.0.10:53 and the
rest TCP flows to 10.252.0.1:80. Then, median of `--runs`:

- query_conntrack(orig_dst=VIP, limit=100)          vs `conntrack -L -d VIP`     (target <= 1.5x)
- query_conntrack(orig_dst=absent, limit=100)       vs `conntrack -L -d absent`  (nothing matches: the kernel's
  walk of its table alone, the floor under any filtered query; user space only receives NLMSG_DONE)
- query_conntrack(orig_dst=busy dst, limit=100)     vs `conntrack -L -d dst`     (almost every entry matches)
- query_conntrack(no filter, limit=0) (a full count) vs `conntrack -L`  and vs `conntrack -C`
- read_conntrack_stats                               vs `conntrack -C` + `conntrack -S`

The reference tools run as `nsenter --net=/var/run/netns/NAME conntrack …` with output read into a pipe.
The namespace is deleted in finally.
"""

from __future__ import annotations

import argparse
import os

from benchkit import bench_netns, median_time, report, run_tool, timed

from lab import conntrack_fill
from nodeagent.checks.conntrack import ConntrackFilter, query_conntrack, read_conntrack_stats
from nodeagent.netns import netns_path

VIP = "10.96.0.10"
BUSY = "10.252.0.1"
ABSENT = "10.96.0.99"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as handle:
        default_max = int(handle.read())
    parser.add_argument("--entries", type=int, default=default_max)
    parser.add_argument("--vip-entries", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with bench_netns("ct") as name:
        path = netns_path(name)
        tool = ["nsenter", f"--net={path}", "conntrack"]
        fill_time, _ = timed(lambda: conntrack_fill.fill(name, args.vip_entries, src_net="10.250.0.0/16", dst=VIP, dport=53))
        more_time, count = timed(
            lambda: conntrack_fill.fill(name, args.entries, src_net="10.251.0.0/16", dst=BUSY, dport=80, protocol="tcp")
        )
        print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())} (2 shared cores)", flush=True)
        print(
            f"filled {name} to {count:,} entries in {fill_time + more_time:.2f} s "
            f"({args.vip_entries:,} to {VIP}:53/udp, the rest to {BUSY}:80/tcp)",
            flush=True,
        )

        vip = query_conntrack(path, ConntrackFilter(orig_dst=VIP), 100)
        print(f"  query(orig_dst={VIP}) matched {vip.total_matched:,}", flush=True)
        report(
            f"query orig_dst=VIP ({vip.total_matched:,} of {count:,})",
            median_time(lambda: query_conntrack(path, ConntrackFilter(orig_dst=VIP), 100), args.runs),
            median_time(lambda: run_tool([*tool, "-L", "-d", VIP]), args.runs),
            "conntrack -L -d",
            target=1.5,
        )
        report(
            "query orig_dst=absent (0 match: the kernel's walk alone)",
            median_time(lambda: query_conntrack(path, ConntrackFilter(orig_dst=ABSENT), 100), args.runs),
            median_time(lambda: run_tool([*tool, "-L", "-d", ABSENT]), args.runs),
            "conntrack -L -d",
        )
        busy = query_conntrack(path, ConntrackFilter(orig_dst=BUSY), 100)
        report(
            f"query orig_dst=busy dst ({busy.total_matched:,} match)",
            median_time(lambda: query_conntrack(path, ConntrackFilter(orig_dst=BUSY), 100), args.runs),
            median_time(lambda: run_tool([*tool, "-L", "-d", BUSY]), args.runs),
            "conntrack -L -d",
            target=1.5,
        )
        ours_count = median_time(lambda: query_conntrack(path, ConntrackFilter(), 0), args.runs)
        report(
            "unfiltered count (dump all, limit 0)",
            ours_count,
            median_time(lambda: run_tool([*tool, "-L"]), args.runs),
            "conntrack -L",
        )
        report(
            "unfiltered count (dump all, limit 0)",
            ours_count,
            median_time(lambda: run_tool([*tool, "-C"]), args.runs),
            "conntrack -C (counter)",
        )
        report(
            "read_conntrack_stats",
            median_time(lambda: read_conntrack_stats(path), args.runs),
            median_time(lambda: (run_tool([*tool, "-C"]), run_tool([*tool, "-S"])), args.runs),
            "conntrack -C + -S",
        )


if __name__ == "__main__":
    main()
