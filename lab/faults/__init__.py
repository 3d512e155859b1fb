"""The fault catalog: break one thing the way it breaks in real clusters, and heal it again.

A fault changes real kernel state inside a lab namespace (a route, a sysctl, a link, a firewall
policy, a conntrack entry, a process) or a real API object through the API server — never a flag
the bot or an agent could read. Each injection is recorded in the lab state with what `heal` needs
to restore it; `heal` undoes the recorded faults newest first.

Layout: `model` (the vocabulary: `Fault`, `Verdict`, `Needs`, the undo record base, the context),
`common` (shared helpers), one module per area with each fault's inject and heal beside its catalog
entry (`node`, `pod`, `service`, `policy`, `dns`, `kubeproxy`, `conntrack`, and `underlay`: the node
network and the nodes' host firewalls, faults only packets reveal), and `catalog` (the order `lab
faults` lists, `inject`, `heal`).
"""

from lab.faults.catalog import CATALOG, DEFAULT_POD, DEFAULT_SERVICE, UPSTREAM_BY_HAND, FaultOptions, heal, inject
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict

__all__ = [
    "CATALOG",
    "DEFAULT_POD",
    "DEFAULT_SERVICE",
    "UPSTREAM_BY_HAND",
    "Fault",
    "FaultContext",
    "FaultOptions",
    "FaultTarget",
    "Needs",
    "Undo",
    "Verdict",
    "heal",
    "inject",
]
