"""kube-proxy-shaped rule sets of any size, for the NAT benchmark (iptables-restore text, nft script).

Chain names are hashed as kube-proxy hashes them (base32(sha256(...)) prefixes); each service is a
ClusterIP TCP port with N endpoints, statistic-mode (iptables) or numgen (nftables) load balancing.
"""

from __future__ import annotations

import base64
import hashlib

CLUSTER_CIDR = "10.244.0.0/16"


def _b32(text: str, size: int) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:size]


def service_vip(index: int) -> str:
    """The ClusterIP of service `index` (inside 10.96.0.0/12)."""
    return f"10.{96 + index // 62500}.{(index // 250) % 250}.{index % 250 + 1}"


def endpoint_ip(index: int, slot: int) -> str:
    """The pod IP of endpoint `slot` of service `index` (inside 10.244.0.0/16... and beyond)."""
    n = index * 8 + slot
    return f"10.{244 + n // 64516}.{(n // 254) % 254}.{n % 254 + 1}"


def iptables_restore(services: int, endpoints: int) -> str:
    """nat-table restore text for `services` ClusterIP services with `endpoints` endpoints each."""
    chains = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
    ]
    rules = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
    ]
    for i in range(services):
        name = f"bench/svc-{i}:http"
        vip = service_vip(i)
        svc = "KUBE-SVC-" + _b32(name + "tcp", 16)
        chains.append(f":{svc} - [0:0]")
        rules.append(f'-A KUBE-SERVICES -m comment --comment "{name} cluster IP" -m tcp -p tcp -d {vip} --dport 80 -j {svc}')
        rules.append(
            f'-A {svc} -m comment --comment "{name} cluster IP" -m tcp -p tcp -d {vip} --dport 80 '
            f"! -s {CLUSTER_CIDR} -j KUBE-MARK-MASQ"
        )
        for slot in range(endpoints):
            ip = endpoint_ip(i, slot)
            sep = "KUBE-SEP-" + _b32(name + "tcp" + f"{ip}:8080", 16)
            chains.append(f":{sep} - [0:0]")
            left = endpoints - slot
            stat = f"-m statistic --mode random --probability {1.0 / left:0.10f} " if left > 1 else ""
            rules.append(f'-A {svc} -m comment --comment "{name} -> {ip}:8080" {stat}-j {sep}')
            rules.append(f'-A {sep} -m comment --comment "{name}" -s {ip} -j KUBE-MARK-MASQ')
            rules.append(f'-A {sep} -m comment --comment "{name}" -m tcp -p tcp -j DNAT --to-destination {ip}:8080')
    rules.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
        'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    return "\n".join([*chains, *rules, "COMMIT", ""])


def nft_script(services: int, endpoints: int, layout: str = "endpoint-chains") -> str:
    """An `nft -f` script: table ip kube-proxy with `services` services of `endpoints` endpoints.

    `layout` "endpoint-chains": a `numgen … vmap` to one chain per endpoint (kube-proxy up to the mid
    1.3x releases); "numgen-dnat-map": one `dnat ip to numgen random mod N map { … }` rule per service
    chain and a hairpin-connections set (kube-proxy 1.36).
    """
    out = [
        "table ip kube-proxy {",
        "  set cluster-ips { type ipv4_addr; }",
        "  map no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }",
        "  map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
        "  chain reject-chain { reject; }",
        "  chain mark-for-masquerade { mark set mark or 0x4000; }",
        "  chain nat-prerouting { type nat hook prerouting priority -100; jump services; }",
        "  chain nat-output { type nat hook output priority -100; jump services; }",
        "  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }",
        "}",
    ]
    elements: list[str] = []
    for i in range(services):
        vip = service_vip(i)
        base = f"bench/svc-{i}/tcp/http"
        svc = f"service-{_b32(base, 8)}-{base}"
        eps = []
        if layout == "numgen-dnat-map":
            targets = ", ".join(f"{slot} : {endpoint_ip(i, slot)} . 8080" for slot in range(endpoints))
            out.append(f"add chain ip kube-proxy {svc}")
            out.append(
                f"add rule ip kube-proxy {svc} meta l4proto tcp dnat ip to numgen random mod {endpoints} map {{ {targets} }}"
            )
            elements.append(f'{vip} . tcp . 80 comment "bench/svc-{i}:http" : goto {svc}')
            continue
        for slot in range(endpoints):
            ip = endpoint_ip(i, slot)
            ep_base = f"{base}__{ip}/8080"
            ep = f"endpoint-{_b32(ep_base, 8)}-{ep_base}"
            eps.append(ep)
            out.append(f"add chain ip kube-proxy {ep}")
            out.append(f"add rule ip kube-proxy {ep} ip saddr {ip} jump mark-for-masquerade")
            out.append(f"add rule ip kube-proxy {ep} meta l4proto tcp dnat to {ip}:8080")
        vmap = ", ".join(f"{n} : goto {ep}" for n, ep in enumerate(eps))
        out.append(f"add chain ip kube-proxy {svc}")
        out.append(
            f"add rule ip kube-proxy {svc} ip daddr {vip} tcp dport 80 ip saddr != {CLUSTER_CIDR} jump mark-for-masquerade"
        )
        out.append(f"add rule ip kube-proxy {svc} numgen random mod {endpoints} vmap {{ {vmap} }}")
        elements.append(f'{vip} . tcp . 80 comment "bench/svc-{i}:http" : goto {svc}')
    for start in range(0, len(elements), 1000):
        out.append("add element ip kube-proxy service-ips { " + ", ".join(elements[start : start + 1000]) + " }")
        vips = ", ".join(service_vip(i) for i in range(start, min(start + 1000, services)))
        out.append(f"add element ip kube-proxy cluster-ips {{ {vips} }}")
    return "\n".join(out) + "\n"
