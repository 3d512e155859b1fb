#!/bin/sh
# Run the agent table benchmarks (conntrack, NAT, agent memory) and the capture benchmark; each prints its figures next to the
# reference tool measured in the same run, and the ratio. Needs root. Every namespace is `kb-…` and
# is deleted when a benchmark ends, also on failure. Arguments per benchmark via the environment:
#   CONNTRACK_ARGS="--runs 5"  NAT_ARGS="--services 10000 --endpoints 3"  MEMORY_ARGS=""  CAPTURE_ARGS="--seconds 3"
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
echo
echo "== capture: CapturePackets on a flooded veth vs tcpdump -w /dev/null"
if ! command -v tcpdump >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump >/dev/null
fi
timeout 300 "$python" bench_capture.py ${CAPTURE_ARGS:-}
