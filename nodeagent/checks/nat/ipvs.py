"""kube-proxy's IPVS mode, read with pyroute2's IPVS generic netlink client.

IPVS mode is detected from the kube-ipvs0 dummy link plus the generic netlink family "IPVS" (a
kernel without the family is not IPVS). The virtual server and its real servers are read with
IPVS_CMD_GET_SERVICE / IPVS_CMD_GET_DEST through `pyroute2.IPVS`, opened on a thread inside the
node's namespace; a few messages per lookup, so pyroute2's per-attribute objects cost nothing that
matters here (unlike the conntrack dump, which has its own lean parser).

Untested on the development machine, whose kernel has no IPVS; every step fails soft into
"not ipvs" / programmed=False.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from pyroute2 import IPVS, IPVSService
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.checks.nat.model import MAX_EVIDENCE_RULES, NatEndpoint, NatStateError, ServiceNat
from nodeagent.netns import run_in_netns

IP_VS_SVC_F_PERSISTENT = 0x1
_IP_PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def _has_link(netns: str, name: str) -> bool:
    def lookup() -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    return run_in_netns(netns, lookup)


def _family_exists() -> bool:
    try:
        with IPVS():
            return True
    except (NetlinkError, OSError):
        return False


def ipvs_active(netns: str) -> bool:
    """Whether kube-proxy's IPVS mode is set up: kube-ipvs0 exists and the kernel has IPVS."""
    return _has_link(netns, "kube-ipvs0") and run_in_netns(netns, _family_exists)


def _read(vip: str, port: int, protocol: str) -> tuple[Any, list[Any]] | None:
    """(service attributes, [dest attributes]) from IPVS in the calling thread's namespace; None when
    there is no such virtual server. Raises NetlinkError (ENOENT when the family is missing)."""
    service = IPVSService(addr=vip, port=port, protocol=_IP_PROTOCOLS[protocol.upper()])
    with IPVS() as ipvs:
        try:
            found = list(ipvs.service("get", service=service))
        except NetlinkError as exc:
            if exc.code in (errno.ESRCH, errno.ENOENT):
                return None
            raise
        if not found:
            return None
        dests = list(ipvs.dest("dump", service=service))
    return (found[0].get("IPVS_CMD_ATTR_SERVICE"), [d.get("IPVS_CMD_ATTR_DEST") for d in dests])


def ipvs_service_nat(netns: str, vip: str, port: int, protocol: str) -> ServiceNat:
    """The IPVS virtual server VIP:port/protocol and its real servers (IPVS_CMD_GET_SERVICE/GET_DEST).

    Untested here: the development kernel has no IPVS. Probabilities are weight / total weight.
    """
    evidence: list[str] = []

    def result(programmed: bool, chain: str | None, affinity: bool, endpoints: tuple[NatEndpoint, ...]) -> ServiceNat:
        return ServiceNat(
            mode="ipvs",
            vip=vip,
            port=port,
            protocol=protocol.upper(),
            programmed=programmed,
            service_name=None,
            service_chain=chain,
            endpoints=endpoints,
            no_endpoints_action=None,
            session_affinity=affinity,
            rules=tuple(evidence[:MAX_EVIDENCE_RULES]),
        )

    if not run_in_netns(netns, _family_exists):
        evidence.append("# the kernel has no IPVS netlink family")
        return result(False, None, False, ())
    try:
        read = run_in_netns(netns, lambda: _read(vip, port, protocol))
    except (NetlinkError, OSError) as exc:
        raise NatStateError(f"IPVS query failed: {exc}") from exc
    if read is None:
        evidence.append(f"# no IPVS virtual server {vip}:{port}/{protocol.lower()}")
        return result(False, None, False, ())
    service, dests = read
    scheduler = str(service.get("IPVS_SVC_ATTR_SCHED_NAME") or "?") if service is not None else "?"
    flags = service.get("IPVS_SVC_ATTR_FLAGS") if service is not None else None
    affinity = bool(int(flags.get("flags") or 0) & IP_VS_SVC_F_PERSISTENT) if flags is not None else False
    evidence.append(f"-A -t {vip}:{port} -s {scheduler}" + (" -p" if affinity else ""))
    real: list[tuple[str, int, int]] = []
    for dest in dests:
        if dest is None or dest.get("IPVS_DEST_ATTR_ADDR") is None or dest.get("IPVS_DEST_ATTR_PORT") is None:
            continue
        weight = dest.get("IPVS_DEST_ATTR_WEIGHT")
        real.append(
            (str(dest.get("IPVS_DEST_ATTR_ADDR")), int(dest.get("IPVS_DEST_ATTR_PORT")), 1 if weight is None else int(weight))
        )
    total = sum(weight for _, _, weight in real)
    endpoints = []
    for ip, dport, weight in real:
        evidence.append(f"-a -t {vip}:{port} -r {ip}:{dport} -w {weight}")
        endpoints.append(NatEndpoint(ip=ip, port=dport, chain=None, probability=weight / total if total else None))
    return result(True, f"ipvs {protocol.upper()} {vip}:{port} {scheduler}", affinity, tuple(endpoints))
