#!/bin/sh
# Run the agent table benchmarks (conntrack, NAT, agent memory); each prints its figures next to the
# reference tool measured in the same run, and the ratio. Needs root. Every namespace is `kb-…` and
# is deleted when a benchmark ends, also on failure. Arguments per benchmark via the environment:
#   CONNTRACK_ARGS="--runs 5"  NAT_ARGS="--services 10000 --endpoints 3"  MEMORY_ARGS=""
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python="${PYTHON:-$here/../.venv/bin/python}"
cd "$here"
echo "== conntrack: query_conntrack vs conntrack -L on a full table"
timeout 900 "$python" bench_conntrack.py ${CONNTRACK_ARGS:-}
echo
echo "== NAT: service_nat cold/warm vs iptables-save and nft -j"
timeout 1800 "$python" bench_nat.py ${NAT_ARGS:-}
echo
echo "== agent memory around a full-table conntrack query"
timeout 900 "$python" bench_agent_memory.py ${MEMORY_ARGS:-}
