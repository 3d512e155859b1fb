"""Chain, map and set names exactly as kube-proxy computes them.

iptables mode (pkg/proxy/iptables/proxier.go): a chain name is a prefix plus the first 16 characters
of base32(sha256(service-port-name + protocol [+ endpoint "ip:port"])), where the service port name
is "namespace/name:portname" (":portname" left out when the port has no name) and the protocol is
lower case ("tcp"). iptables chain names must stay under 29 characters, hence the hash.

nftables mode (pkg/proxy/nftables/proxier.go): names are readable: a prefix, then the first 8
characters of base32(sha256(name)), a dash and the name itself, where name is
"namespace/service/protocol/portname" for a service port and
"namespace/service/protocol/portname__endpointIP/endpointPort" for an endpoint.
"""

from __future__ import annotations

import base64
import hashlib

IPTABLES_SERVICE_PREFIX = "KUBE-SVC-"
IPTABLES_LOCAL_PREFIX = "KUBE-SVL-"
IPTABLES_FIREWALL_PREFIX = "KUBE-FW-"
IPTABLES_EXTERNAL_PREFIX = "KUBE-EXT-"
IPTABLES_ENDPOINT_PREFIX = "KUBE-SEP-"
IPTABLES_SERVICE_CHAIN_PREFIXES = (
    IPTABLES_SERVICE_PREFIX,
    IPTABLES_LOCAL_PREFIX,
    IPTABLES_ENDPOINT_PREFIX,
    IPTABLES_FIREWALL_PREFIX,
    IPTABLES_EXTERNAL_PREFIX,
)

NFT_SERVICE_PREFIX = "service-"
NFT_LOCAL_PREFIX = "local-"
NFT_EXTERNAL_PREFIX = "external-"
NFT_ENDPOINT_PREFIX = "endpoint-"
NFT_AFFINITY_PREFIX = "affinity-"
NFT_FIREWALL_PREFIX = "firewall-"
_NFT_NAME_LENGTH_MAX = 256
_NFT_PREFIX_LENGTH_MAX = 16
_NFT_BASE_LENGTH_MAX = _NFT_NAME_LENGTH_MAX - _NFT_PREFIX_LENGTH_MAX


def _base32_sha256(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode("ascii")


def service_port_name(namespace: str, name: str, port_name: str) -> str:
    """kube-proxy's ServicePortName string: "ns/name:port", or "ns/name" for an unnamed port."""
    return f"{namespace}/{name}:{port_name}" if port_name else f"{namespace}/{name}"


def endpoint_string(ip: str, port: int) -> str:
    """An endpoint as kube-proxy prints it (net.JoinHostPort): "ip:port" ("[ip]:port" for IPv6)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def port_proto_hash(svc_port_name: str, protocol: str) -> str:
    """The 16-character hash shared by a service port's KUBE-SVC/SVL/EXT/FW chains."""
    return _base32_sha256(svc_port_name + protocol.lower())[:16]


def iptables_service_chain(svc_port_name: str, protocol: str) -> str:
    """KUBE-SVC-…: the chain dispatching to endpoints under the Cluster traffic policy."""
    return IPTABLES_SERVICE_PREFIX + port_proto_hash(svc_port_name, protocol)


def iptables_local_chain(svc_port_name: str, protocol: str) -> str:
    """KUBE-SVL-…: the chain dispatching to this node's endpoints under the Local traffic policy."""
    return IPTABLES_LOCAL_PREFIX + port_proto_hash(svc_port_name, protocol)


def iptables_external_chain(svc_port_name: str, protocol: str) -> str:
    """KUBE-EXT-…: the chain NodePort / external IP traffic enters before the policy chain."""
    return IPTABLES_EXTERNAL_PREFIX + port_proto_hash(svc_port_name, protocol)


def iptables_firewall_chain(svc_port_name: str, protocol: str) -> str:
    """KUBE-FW-…: the loadBalancerSourceRanges chain."""
    return IPTABLES_FIREWALL_PREFIX + port_proto_hash(svc_port_name, protocol)


def iptables_endpoint_chain(svc_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-…: one endpoint's DNAT chain; `endpoint` is "ip:port"."""
    return IPTABLES_ENDPOINT_PREFIX + _base32_sha256(svc_port_name + protocol.lower() + endpoint)[:16]


def is_iptables_service_chain(chain: str) -> bool:
    """True for the per-service chains kube-proxy owns and deletes when they go stale."""
    return chain.startswith(IPTABLES_SERVICE_CHAIN_PREFIXES)


def _hash_and_truncate(name: str) -> str:
    full = _base32_sha256(name)[:8] + "-" + name
    if len(full) > _NFT_BASE_LENGTH_MAX:
        full = full[: _NFT_BASE_LENGTH_MAX - 3] + "..."
    return full


def nft_service_chain_base(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """The base of a service port's nftables names, e.g. "ULMVA6XW-ns1/svc1/tcp/p80"."""
    return _hash_and_truncate(f"{namespace}/{name}/{protocol.lower()}/{port_name}")


def nft_endpoint_chain_base(namespace: str, name: str, protocol: str, port_name: str, endpoint: str) -> str:
    """The base of an endpoint's nftables names, e.g. "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"."""
    ip, _, port = endpoint.rpartition(":")
    ip = ip.strip("[]").replace(":", ".")
    return _hash_and_truncate(f"{namespace}/{name}/{protocol.lower()}/{port_name}__{ip}/{port}")


def is_nft_service_chain(chain: str) -> bool:
    """True for per-service/per-endpoint nftables chains (only they contain a "/")."""
    return "/" in chain
