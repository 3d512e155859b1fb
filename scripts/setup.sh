#!/usr/bin/env bash
# kubereach set-up on a fresh Debian machine, as root.
#   bash scripts/setup.sh demo [ARGS...]   bring up the lab and run `kubereach demo`
#   bash scripts/setup.sh test [PYTEST ARGS...]   run the whole test suite (lint, types, layers, proto, tests)
# Installs what is missing: Debian's python3-venv, iproute2, iptables, nftables, conntrack, libcairo2,
# fonts-dejavu-core (and for tests chromium, chromium-driver);
# a virtualenv in .venv with the package and its dev tools.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
mode="${1:-}"
shift || true

case "$mode" in
  demo|test) ;;
  *) echo "usage: bash scripts/setup.sh demo|test [args...]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "kubereach: the lab builds network namespaces and needs root. Run: sudo bash scripts/setup.sh $mode" >&2
  exit 1
fi

# System tools, from Debian's packages, only when missing.
declare -A pkg_for=([ip]=iproute2 [iptables]=iptables [nft]=nftables [conntrack]=conntrack)
missing=()
for tool in ip iptables nft conntrack; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
python_bin="$(command -v python3 || true)"
if [ -z "$python_bin" ]; then
  missing+=(python3)
elif ! "$python_bin" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
# Cairo and DejaVu draw the path picture (cairosvg); the browser tests drive Debian's Chromium.
for pkg in libcairo2 fonts-dejavu-core; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "$mode" = test ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "kubereach: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  python_bin="$(command -v python3)"
fi

# The virtualenv, rebuilt when pyproject.toml changes.
venv="$here/.venv"
stamp="$venv/.kubereach-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "kubereach: preparing $venv"
  "$python_bin" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
# Byte-compile the sources as an install would: the package is installed editable, and a shell with
# PYTHONDONTWRITEBYTECODE=1 would otherwise compile them again in every process it starts.
"$venv/bin/python" -m compileall -q -j 0 bot nodeagent lab proto >/dev/null

if [ "$mode" = demo ]; then
  exec kubereach demo "$@"
fi

echo "== ruff";          ruff check bot nodeagent lab tests bench migrations scripts
echo "== mypy (strict)"; mypy
echo "== import layers"; lint-imports
echo "== proto";         python -m scripts.protogen --check
echo "== buf lint"
if ! command -v npx >/dev/null 2>&1; then
  echo "kubereach: installing Debian packages: nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
npx --yes @bufbuild/buf lint proto
echo "== pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$rc"
