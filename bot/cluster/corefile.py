"""Where the cluster DNS forwards names outside the cluster: the `forward` line of CoreDNS's Corefile.

CoreDNS reads its configuration from the ConfigMap `kube-system/coredns` (key `Corefile`), which
kubeadm, kOps, EKS, GKE's CoreDNS installs and the Helm chart all write. The root server block (`.:53`
or `.`) carries `forward . TO...`: each TO is an address (`8.8.8.8`, `8.8.8.8:53`, `dns://8.8.8.8`,
`tls://9.9.9.9` for DNS over TLS) or a resolv.conf path — by default `/etc/resolv.conf`, which for the
CoreDNS pods (`dnsPolicy: Default`) is the node's resolver as kubelet's --resolv-conf gives it.

`forward_upstreams` returns the addresses, or () when the Corefile forwards to a resolv.conf or has no
such line: the bot then asks the upstream the DNS pods' own resolv.conf names (the agent reads it in
the DNS pod's namespace), which is what CoreDNS itself would do.
"""

from __future__ import annotations

import ipaddress

MAX_COREFILE_CHARS = 64 * 1024
MAX_UPSTREAMS = 4


def _address(target: str) -> str | None:
    """The IP address of one `forward` target, or None for a resolv.conf path or anything else."""
    text = target.split("://", 1)[1] if "://" in target else target
    if text.startswith("["):  # [2001:db8::1]:53
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _zone(key: str) -> str:
    """The zone of a server block key: `.:53`, `dns://.:53` and `.` are the root zone, "."."""
    zone = key.split("://", 1)[1] if "://" in key else key
    return zone.rsplit(":", 1)[0] if ":" in zone else zone


def _root_blocks(corefile: str) -> list[list[str]]:
    """The directive lines (words, comments dropped) of each server block serving the root zone."""
    blocks: list[list[str]] = []
    current: list[str] = []
    depth, in_root = 0, False
    for raw in corefile[:MAX_COREFILE_CHARS].splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0 and line.endswith("{"):
            zones = line[:-1].replace(",", " ").split()
            in_root = any(_zone(z) == "." for z in zones)
            current = []
            depth = 1
            continue
        if depth == 1 and in_root:
            current.append(line)
        depth += line.count("{") - line.count("}")
        if depth <= 0:
            depth = 0
            if in_root:
                blocks.append(current)
            in_root = False
    return blocks


def forward_upstreams(corefile: str) -> tuple[str, ...]:
    """The addresses the root zone's `forward .` sends to (at most `MAX_UPSTREAMS`); () when it forwards
    to a resolv.conf or there is no such line."""
    for block in _root_blocks(corefile):
        for line in block:
            words = line.rstrip("{").split()
            if len(words) >= 3 and words[0] == "forward" and words[1] == ".":
                found = [a for a in (_address(w) for w in words[2:]) if a is not None]
                return tuple(dict.fromkeys(found))[:MAX_UPSTREAMS]
    return ()
