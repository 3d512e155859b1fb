"""Pure parts of the agent's checks: resolv.conf, search-list expansion, sock_diag records, validation."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from nodeagent.checks.dns import candidate_names, parse_resolv_conf
from nodeagent.checks.links import nud_state
from nodeagent.checks.probe import ProbeOutcome, classify_error
from nodeagent.checks.sockets import DIAG_MESSAGE, NLMSG_DONE, NLMSG_ERROR, NLMSG_HEADER, SOCK_DIAG_BY_FAMILY, parse_diag_messages
from nodeagent.errors import InvalidRequest, KernelQueryFailed
from nodeagent.validation import dns_name, interface_name, ip_literal, netns_name, timeout_seconds


def test_resolv_conf_last_search_wins_and_ndots_is_read() -> None:
    conf = parse_resolv_conf(
        "# cluster DNS\nnameserver 10.96.0.10\nnameserver 10.96.0.11\ndomain old.local\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1\n",
        "/etc/netns/ka/resolv.conf",
    )
    assert conf.nameservers == ("10.96.0.10", "10.96.0.11")
    assert conf.search == ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert conf.ndots == 5


def test_resolv_conf_without_options_uses_ndots_one() -> None:
    conf = parse_resolv_conf("nameserver 1.1.1.1\n", "x")
    assert (conf.search, conf.ndots) == ((), 1)


def test_short_name_tries_search_domains_before_the_absolute_name() -> None:
    assert candidate_names("api", ("ns.svc.cluster.local", "cluster.local"), 5) == (
        "api.ns.svc.cluster.local.",
        "api.cluster.local.",
        "api.",
    )


def test_name_with_enough_dots_is_tried_absolute_first() -> None:
    assert candidate_names("api.example.com", ("cluster.local",), 2) == ("api.example.com.", "api.example.com.cluster.local.")


def test_fully_qualified_name_is_tried_alone() -> None:
    assert candidate_names("api.shop.svc.cluster.local.", ("cluster.local",), 5) == ("api.shop.svc.cluster.local.",)


def _diag_record(family: int, state: int, address: bytes, port: int, inode: int) -> bytes:
    body = DIAG_MESSAGE.pack(
        family, state, 0, 0, socket.htons(port), 0, address.ljust(16, b"\0"), b"\0" * 16, 0, 0, 0, 0, 0, 0, 0, inode
    )
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body


def test_sock_diag_records_are_parsed_until_done() -> None:
    done = NLMSG_HEADER.pack(NLMSG_HEADER.size + 4, NLMSG_DONE, 2, 1, 0) + b"\0" * 4
    data = _diag_record(socket.AF_INET, 10, socket.inet_aton("10.244.1.5"), 8080, 777) + done
    records, finished = parse_diag_messages(data)
    assert finished
    assert records == [(socket.AF_INET, 10, socket.inet_aton("10.244.1.5").ljust(16, b"\0"), 8080, 777)]


def test_sock_diag_error_message_becomes_kernel_query_failed() -> None:
    error = NLMSG_HEADER.pack(NLMSG_HEADER.size + 4, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -errno.EPERM)
    with pytest.raises(KernelQueryFailed, match="Operation not permitted"):
        parse_diag_messages(error)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (TimeoutError("timed out"), ProbeOutcome.TIMED_OUT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), ProbeOutcome.REFUSED),
        (ConnectionResetError(errno.ECONNRESET, "reset"), ProbeOutcome.RESET),
        (OSError(errno.EHOSTUNREACH, "No route to host"), ProbeOutcome.UNREACHABLE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), ProbeOutcome.UNREACHABLE),
        (OSError(errno.EINVAL, "Invalid argument"), ProbeOutcome.UNREACHABLE),
        (OSError(errno.EMFILE, "Too many open files"), ProbeOutcome.ERROR),
    ],
)
def test_socket_errors_map_to_probe_outcomes(error: OSError, outcome: ProbeOutcome) -> None:
    assert classify_error(error) == outcome


def test_nud_state_names_every_bit() -> None:
    assert nud_state(0x80) == ("PERMANENT",)
    assert nud_state(0x02 | 0x04) == ("REACHABLE", "STALE")
    assert nud_state(0) == ("NONE",)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", ".", "x" * 300, ""])
def test_netns_names_that_could_escape_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        netns_name(bad, "netns_name")


@pytest.mark.parametrize("bad", ["eth0/1", "..", "averyveryverylongname0", "-x", ""])
def test_interface_names_are_bounded(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        interface_name(bad, "input_interface")


def test_ip_literals_are_normalised() -> None:
    assert ip_literal("fd00:0::1", "ip") == "fd00::1"
    with pytest.raises(InvalidRequest):
        ip_literal("010.1.1.1", "ip")


def test_timeout_defaults_and_bounds() -> None:
    assert timeout_seconds(0) == 2.0
    assert timeout_seconds(10_000) == 10.0
    with pytest.raises(InvalidRequest):
        timeout_seconds(10_001)


def test_dns_names_reject_empty_labels_and_accept_trailing_dot() -> None:
    assert dns_name("web.shop.svc.cluster.local.") == "web.shop.svc.cluster.local."
    with pytest.raises(InvalidRequest):
        dns_name("web..shop")
