"""Plain probes run inside a lab namespace: `ip netns exec NS python -m tests.lab.netprobe JSON`.

Each probe is a TCP connect, an HTTP GET, a UDP DNS query (optionally from a fixed source port, optionally padded
to a size) or a TCP DNS query; they run concurrently and print one JSON list of results. This is
the test suite's own "plain kernel tool": it uses sockets only, nothing of kubereach.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dns.message
import dns.query
import dns.rcode


def tcp(host: str, port: int, timeout: float) -> dict[str, Any]:
    """Connect, read the greeting if the server sends one, close."""
    with socket.socket() as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return {"ok": False, "outcome": "refused"}
        except TimeoutError:
            return {"ok": False, "outcome": "timeout"}
        except OSError as exc:
            return {"ok": False, "outcome": _OUTCOMES.get(exc.errno or 0, "error"), "error": str(exc)}
        s.settimeout(0.5)  # servers greet; DNS over TCP does not
        try:
            banner = s.recv(200).decode(errors="replace").strip()
        except TimeoutError:
            banner = ""
        except OSError as exc:
            return {"ok": False, "outcome": "reset", "error": str(exc)}
        return {"ok": True, "outcome": "connected", "banner": banner}


_OUTCOMES = {errno.EHOSTUNREACH: "unreachable", errno.ENETUNREACH: "unreachable", errno.ECONNRESET: "reset"}


def dns_udp(server: str, name: str, timeout: float, sport: int = 0, pad: int = 0) -> dict[str, Any]:
    query = dns.message.make_query(name, "A", use_edns=0 if pad else None, payload=4096, pad=pad)
    try:
        answer = dns.query.udp(query, server, timeout=timeout, source_port=sport, ignore_unexpected=True)
    except dns.exception.Timeout:
        return {"ok": False, "outcome": "timeout"}
    except OSError as exc:
        return {"ok": False, "outcome": "error", "error": str(exc)}
    return {
        "ok": answer.rcode() == dns.rcode.NOERROR and bool(answer.answer),
        "outcome": dns.rcode.to_text(answer.rcode()),
        "answers": [rr.to_text() for rrset in answer.answer for rr in rrset],
    }


def http_get(host: str, port: int, timeout: float) -> dict[str, Any]:
    """One HTTP GET /; the status and the body as text."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return {"ok": True, "status": response.status, "body": response.read(4096).decode(errors="replace")}
    except OSError as exc:
        return {"ok": False, "outcome": "error", "error": str(exc)}
    finally:
        conn.close()


def run(probe: dict[str, Any]) -> dict[str, Any]:
    timeout = float(probe.get("timeout", 1.5))
    if probe["kind"] == "http":
        result = http_get(probe["host"], int(probe["port"]), timeout)
    elif probe["kind"] == "tcp":
        result = tcp(probe["host"], int(probe["port"]), timeout)
    else:
        result = dns_udp(probe["server"], probe["name"], timeout, int(probe.get("sport", 0)), int(probe.get("pad", 0)))
    return {**probe, **result}


def main() -> None:
    probes = json.loads(sys.argv[1])
    with ThreadPoolExecutor(max_workers=32) as pool:
        print(json.dumps(list(pool.map(run, probes))))


if __name__ == "__main__":
    main()
