"""The example questions a `ParseError` ends with, one for each kind of mistake.

They live in one module because several grammar steps report the same kind of mistake (a port is read
in the options, on a reference and on a NodePort): each message about it shows the same example.
"""

from __future__ import annotations

EXAMPLE = "why can't frontend reach api:8080 in shop"
"""A whole question, shown when no example of the mistake's own kind fits."""
PORT_EXAMPLE = "frontend → api:8080"
PROTOCOL_EXAMPLE = "web-0 → 10.96.0.10:53/udp"
NAMESPACE_EXAMPLE = "frontend in shop → ledger in payments"
SOURCE_EXAMPLE = "deploy/frontend → svc/api:8080"
ENTRY_EXAMPLE = "why can't clients reach svc/web's load balancer"
NODEPORT_EXAMPLE = "outside → nodeport 30080 on node-2"
OUTSIDE_TARGET_EXAMPLE = "frontend → www.example.com:443"
