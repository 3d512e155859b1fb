"""NetworkPolicy enforcement for the lab: policies compiled into iptables rules in each node namespace.

`render_policy_rules` is a pure compiler (Kubernetes-shaped dicts in, an `iptables-restore
--noflush` script out); `apply_policy_rules` loads such a script into a node's namespace. The chain
layout follows kube-router (KUBE-ROUTER-FORWARD, KUBE-POD-FW-<hash>, KUBE-NWPLCY-<hash>); see
`lab.netpol.compiler` for the details.
"""

from lab.netpol.apply import (
    FilterTableState,
    NetworkPolicyApplyError,
    apply_policy_rules,
    read_filter_table,
    remove_policy_rules,
)
from lab.netpol.compiler import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    FilterChain,
    PolicyChains,
    compile_policy_chains,
    pod_chain_name,
    policy_chain_name,
    render_chains,
    render_policy_rules,
)
from lab.netpol.model import InvalidNetworkPolicy

__all__ = [
    "FORWARD_CHAIN",
    "INPUT_CHAIN",
    "FilterChain",
    "FilterTableState",
    "InvalidNetworkPolicy",
    "NetworkPolicyApplyError",
    "PolicyChains",
    "apply_policy_rules",
    "compile_policy_chains",
    "pod_chain_name",
    "policy_chain_name",
    "read_filter_table",
    "remove_policy_rules",
    "render_chains",
    "render_policy_rules",
]
