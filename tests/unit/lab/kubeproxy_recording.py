"""Compare the lab's kube-proxy with what upstream kube-proxy v1.36.2 wrote (the recordings).

The recordings in tests/unit/fixtures/kube-proxy-v1.36.2/ were taken on node-1 of a lab built from the default
spec with 3 nodes and flannel-vxlan. `recorded_inputs()` rebuilds exactly the Services and
EndpointSlices that real kube-proxy saw there: the lab's own plan (addresses are a pure function of
spec and options), seeded into the lab's API store with its EndpointSlice controller.

Both sides are turned into a structure and compared, never as raw text:

- nftables: per table, the sets and maps (type, flags, comment, elements as a set: the kernel lists
  elements in hash order), and the chains (base-chain type/hook/priority as numbers, comment, rules
  in order). `parse_nft_listing` reads `nft list table` output; `parse_nft_script` reads the lab's
  `nft -f` script.
- iptables: per table, the declared chains and, per chain, the rules in order; a rule is the
  multiset of its option groups with iptables-save's normalisations applied (host addresses get
  /32, --or-mark / --xor-mark become --set-xmark, probabilities compared to 6 places). The service
  rules of nat KUBE-SERVICES are compared as a set (kube-proxy orders them by Go map iteration,
  which changes between syncs) with the NodePort tail call last.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.apiserver import EndpointSliceController, Store
from lab.kubeproxy.iptables import IptablesRuleset
from lab.kubeproxy.model import NodeContext
from lab.objects import seed_objects
from lab.plan import CLUSTER_CIDR, LabOptions, make_plan
from lab.spec import load_spec

RECORDINGS = Path(__file__).parents[1] / "fixtures" / "kube-proxy-v1.36.2"
NODE = "node-1"

# ------------------------------------------------------------------------------ the inputs


def recorded_inputs() -> tuple[list[dict[str, Any]], list[dict[str, Any]], NodeContext]:
    """Services, EndpointSlices and node-1's context as in the recording (default spec's ClusterIP services, 3 nodes).

    The lab's API served no ServiceCIDRs when the recording was made, so the context has none
    (kube-proxy then writes no drop for unallocated ClusterIPs).
    """
    spec = load_spec()
    # The recording predates the services reached from outside and the headless/ExternalName ones (issue 15).
    recorded = tuple(s for s in spec.services if s.type == "ClusterIP" and s.cluster_ip != "None")
    spec = spec.model_copy(update={"services": recorded})
    plan = make_plan(spec, LabOptions(prefix="kr", nodes=3, cni="flannel-vxlan", proxy="nftables"))
    declared = {ns.name for ns in plan.spec.namespaces}
    store = Store(namespaces=[n for n in ("default", "kube-system", "kube-public", "kube-node-lease") if n not in declared])
    controller = EndpointSliceController(store)
    for obj in seed_objects(plan, {n.name: "127.0.0.1:1" for n in plan.nodes}):
        store.create(obj)
    controller.start()
    controller.stop()
    services = store.list("services").items
    slices = store.list("endpointslices").items
    node = plan.node(NODE)
    return services, slices, NodeContext(node_name=node.name, node_ip=node.ip, cluster_cidr=str(CLUSTER_CIDR))


# ------------------------------------------------------------------------------ nftables

_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}


def _priority(text: str) -> int:
    """`dstnat - 10`, `filter`, `-110` → a number."""
    m = re.fullmatch(r"\s*([a-z]+|-?\d+)\s*(?:([-+])\s*(\d+))?\s*", text)
    if not m:
        raise ValueError(f"bad priority {text!r}")
    base = _PRIORITIES[m.group(1)] if m.group(1) in _PRIORITIES else int(m.group(1))
    if m.group(2):
        base += int(m.group(3)) * (1 if m.group(2) == "+" else -1)
    return base


@dataclass
class NftContainer:
    """A set or a map."""

    kind: str
    type: str = ""
    comment: str = ""
    flags: str = ""
    timeout: str = ""
    elements: set[str] = field(default_factory=set)


@dataclass
class NftChain:
    hook: tuple[str, str, int] | None = None
    """(type, hook, priority) of a base chain."""
    comment: str = ""
    rules: list[str] = field(default_factory=list)


@dataclass
class NftTable:
    comment: str = ""
    containers: dict[str, NftContainer] = field(default_factory=dict)
    chains: dict[str, NftChain] = field(default_factory=dict)


def _chain_spec(chain: NftChain, spec: str) -> None:
    for part in (p.strip() for p in spec.split(";")):
        if not part or part.startswith("policy"):
            continue
        if part.startswith("comment"):
            chain.comment = part.split(" ", 1)[1].strip().strip('"')
            continue
        m = re.fullmatch(r"type (\w+) hook (\w+) priority (.+)", part)
        if not m:
            raise ValueError(f"unexpected chain spec {part!r}")
        chain.hook = (m.group(1), m.group(2), _priority(m.group(3)))


def _container_spec(container: NftContainer, spec: str) -> None:
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        word, _, rest = part.partition(" ")
        rest = rest.strip()
        if word == "type":
            container.type = rest
        elif word == "comment":
            container.comment = rest.strip('"')
        elif word == "flags":
            container.flags = rest
        elif word == "timeout":
            container.timeout = rest
        else:
            raise ValueError(f"unexpected set/map property {part!r}")


def _split_elements(body: str) -> set[str]:
    return {e.strip() for e in body.split(",") if e.strip()}


def parse_nft_listing(text: str) -> dict[str, NftTable]:
    """`nft list table …` / `nft list ruleset` output → {"ip kube-proxy": NftTable, …}."""
    tables: dict[str, NftTable] = {}
    table: NftTable | None = None
    container: NftContainer | None = None
    chain: NftChain | None = None
    pending_elements: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if pending_elements is not None:
            pending_elements.append(line)
            if line.endswith("}"):
                assert container is not None
                container.elements |= _split_elements(" ".join(pending_elements).rstrip("}"))
                pending_elements = None
            continue
        if m := re.fullmatch(r"table (\w+) (\S+) \{", line):
            table = tables.setdefault(f"{m.group(1)} {m.group(2)}", NftTable())
        elif m := re.fullmatch(r"(set|map) (\S+) \{", line):
            assert table is not None
            container = table.containers.setdefault(m.group(2), NftContainer(m.group(1)))
        elif m := re.fullmatch(r"chain (\S+) \{", line):
            assert table is not None
            chain = table.chains.setdefault(m.group(1), NftChain())
        elif line == "}":
            if container is not None:
                container = None
            elif chain is not None:
                chain = None
            else:
                table = None
        elif container is not None:
            if line.startswith("elements = {"):
                rest = line[len("elements = {") :]
                if rest.endswith("}"):
                    container.elements |= _split_elements(rest.rstrip("}"))
                else:
                    pending_elements = [rest]
            else:
                _container_spec(container, line)
        elif chain is not None:
            if line.startswith("type ") or (line.startswith("comment ") and not chain.rules):
                _chain_spec(chain, line)
            else:
                chain.rules.append(line)
        elif table is not None and line.startswith("comment "):
            table.comment = line.split(" ", 1)[1].strip('"')
        else:
            raise ValueError(f"unexpected line {raw!r}")
    return tables


def parse_nft_script(script: str) -> dict[str, NftTable]:
    """The lab's `nft -f` script (add/delete table, add set|map|chain|rule|element) → tables."""
    tables: dict[str, NftTable] = {}
    for line in script.splitlines():
        if not line.strip():
            continue
        m = re.fullmatch(r"(add|delete) (table|set|map|chain|rule|element) (\w+) (\S+)(?: (.*))?", line)
        if not m:
            raise ValueError(f"unexpected script line {line!r}")
        verb, what, family, name, rest = m.groups()
        key = f"{family} {name}"
        if what == "table":
            if verb == "delete":
                tables.pop(key, None)
                continue
            table = tables.setdefault(key, NftTable())
            if rest:
                table.comment = re.search(r'comment "([^"]*)"', rest).group(1)  # type: ignore[union-attr]
            continue
        table = tables[key]
        obj, _, body = (rest or "").partition(" ")
        body = body.strip()
        if what in ("set", "map"):
            container = table.containers.setdefault(obj, NftContainer(what))
            _container_spec(container, body.strip("{} "))
        elif what == "chain":
            chain = table.chains.setdefault(obj, NftChain())
            if body:
                _chain_spec(chain, body.strip("{} "))
        elif what == "rule":
            table.chains[obj].rules.append(body)
        else:
            table.containers[obj].elements |= _split_elements(body.strip("{} "))
    return tables


# ------------------------------------------------------------------------------ iptables

# Chains in the recordings written by the lab's NetworkPolicy agent, not by kube-proxy.
NETPOL_CHAIN = re.compile(r"^KUBE-(ROUTER|POD-FW|NWPLCY)-")
_HOST = re.compile(r"^[0-9.]+$|^[0-9a-f:]+$")


def _normalise_group(group: list[str]) -> tuple[str, ...]:
    neg = group[0] == "!"
    words = group[1:] if neg else group
    opt, values = words[0], list(words[1:])
    if opt in ("-s", "-d") and values and _HOST.match(values[0]):
        values[0] += "/128" if ":" in values[0] else "/32"
    if opt == "--or-mark":
        opt, values = "--set-xmark", [f"{values[0]}/{values[0]}"]
    elif opt == "--xor-mark":
        opt, values = "--set-xmark", [f"{values[0]}/0x0"]
    elif opt == "--probability":
        values = [f"{float(values[0]):.6f}"]
    return ("!", opt, *values) if neg else (opt, *values)


def normalise_rule(words: list[str]) -> tuple[tuple[str, ...], ...]:
    """A rule's words after `-A CHAIN` → its option groups, normalised and sorted."""
    groups: list[list[str]] = []
    i = 0
    while i < len(words):
        group = [words[i]]
        if words[i] == "!":
            i += 1
            group.append(words[i])
        i += 1
        while i < len(words) and not (words[i].startswith("-") and not re.fullmatch(r"-?\d+", words[i])) and words[i] != "!":
            group.append(words[i])
            i += 1
        groups.append(group)
    return tuple(sorted(_normalise_group(g) for g in groups))


Rule = tuple[tuple[str, ...], ...]


@dataclass
class IptTable:
    chains: dict[str, list[Rule]] = field(default_factory=dict)


def parse_iptables(text: str) -> dict[str, IptTable]:
    """iptables-save / iptables-restore text → {table: IptTable}, without the NetworkPolicy agent's
    chains and the jumps to them. `-X CHAIN` lines delete the chain."""
    tables: dict[str, IptTable] = {}
    current: IptTable | None = None
    for line in text.splitlines():
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], IptTable())
            continue
        assert current is not None
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if not NETPOL_CHAIN.match(name):
                current.chains[name] = []
            continue
        words = shlex.split(line)
        if words[0] == "-X":
            current.chains.pop(words[1], None)
            continue
        if words[0] != "-A":
            raise ValueError(f"unexpected line {line!r}")
        chain = words[1]
        target = words[words.index("-j") + 1] if "-j" in words else ""
        if NETPOL_CHAIN.match(chain) or NETPOL_CHAIN.match(target):
            continue
        current.chains.setdefault(chain, []).append(normalise_rule(words[2:]))
    return tables


def kernel_view(ruleset: IptablesRuleset, restore_input: str) -> dict[str, IptTable]:
    """What a fresh namespace holds after `apply_iptables` for one family: canary chains, the jumps
    inserted at the top of the built-in chains in order, then the restore input."""
    tables = parse_iptables(restore_input)
    builtin = {
        "filter": ("INPUT", "FORWARD", "OUTPUT"),
        "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
        "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    }
    for name, chains in builtin.items():
        table = tables.setdefault(name, IptTable())
        for chain in chains:
            table.chains.setdefault(chain, [])
    for name in ruleset.canary_tables:
        tables[name].chains.setdefault("KUBE-PROXY-CANARY", [])
    for jump in ruleset.jumps:
        rule = normalise_rule(list(jump.rule))
        chain = tables[jump.table].chains[jump.chain]
        if rule not in chain:
            chain.insert(0, rule)
        tables[jump.table].chains.setdefault(jump.rule[-1], [])
    return tables


def diff_iptables(ours: dict[str, IptTable], real: dict[str, IptTable], tables: tuple[str, ...]) -> list[str]:
    """Differences, empty when equal (KUBE-SERVICES in nat compared as a set, tail call last)."""
    problems: list[str] = []
    for name in tables:
        a, b = ours.get(name, IptTable()), real.get(name, IptTable())
        if set(a.chains) != set(b.chains):
            problems.append(
                f"{name}: chains only ours {sorted(set(a.chains) - set(b.chains))}, "
                f"only real {sorted(set(b.chains) - set(a.chains))}"
            )
        for chain in sorted(set(a.chains) & set(b.chains)):
            ra, rb = a.chains[chain], b.chains[chain]
            if name == "nat" and chain == "KUBE-SERVICES":
                same = Counter(ra[:-1]) == Counter(rb[:-1]) and ra[-1:] == rb[-1:]
            else:
                same = ra == rb
            if not same:
                problems.append(f"{name} {chain}:\n  ours {ra}\n  real {rb}")
    return problems
