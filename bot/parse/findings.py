"""What reading one question has found so far, besides its two names.

The options said once for the whole question (its namespace, port and protocol, whether to trace,
whether the failure comes and goes), the words skipped, and the problems met, in the order they were
met: the first one is the one the person is told about. Every grammar step adds to the same
`Findings`, and a port or namespace is set only through the methods here, so that a second, different
value is a problem wherever in the text it was written (``-n shop``, ``in shop`` before any name, a
``:8080`` on the target, a NodePort's ``/udp``).
"""

from __future__ import annotations

from bot.parse.errors import NAMESPACE_EXAMPLE, PORT_EXAMPLE, PROTOCOL_EXAMPLE, Unreadable, shown
from bot.parse.models import Protocol
from bot.parse.references import PortSpec, is_label, read_port


class Findings:
    """The state of reading one question: its options so far, the skipped words and the problems met."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.problems: list[Unreadable] = []
        self.port: int | None = None
        self.port_name: str | None = None
        self.port_unreadable = False
        """A port was written but could not be read: the closest form shows ``?`` for it."""
        self.protocol: Protocol | None = None
        self.namespace: str | None = None
        self.command_form = False
        """The question began with a slash command: two bare names read as ``SOURCE TARGET``."""
        self.ignored: list[str] = []
        self.target_state = False
        """A word said that a name is what fails (``is redis down``): a lone name is the target."""
        self.trace = False
        self.intermittent = False
        self.about_dns = False
        """A word said the question is about name resolution (``dns``, ``nslookup``, ``resolve``)."""

    def set_namespace(self, value: str) -> None:
        """The namespace for the whole question; a second, different one is a problem."""
        if not is_label(value):
            self.problems.append(
                Unreadable(
                    f"'{shown(value)}' is not a valid namespace: use lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit.",
                    value,
                    example=NAMESPACE_EXAMPLE,
                )
            )
            return
        if self.namespace is not None and self.namespace != value:
            self.problems.append(
                Unreadable(
                    f"Two namespaces ({self.namespace} and {value}) for the whole question: write each "
                    "namespace after its name (frontend in shop → ledger in payments).",
                    value,
                    example=NAMESPACE_EXAMPLE,
                )
            )
            return
        self.namespace = value

    def take_port(self, text: str) -> None:
        """Read a port written as an option (``port 8080``, ``on 53/udp``, ``8080``) and set it."""
        try:
            spec = read_port(text)
        except Unreadable as problem:
            self.port_unreadable = True
            self.problems.append(problem.with_example(PORT_EXAMPLE))
            return
        self.set_port(spec)

    def set_port(self, spec: PortSpec) -> None:
        """The port (and protocol) of the question; a second, different port is a problem."""
        if spec.protocol is not None:
            self.set_protocol(spec.protocol)
        if spec.number is None and spec.name is None:
            return
        given = spec.number if spec.number is not None else spec.name
        current = self.port if self.port is not None else self.port_name
        if current is not None and current != given:
            self.problems.append(
                Unreadable(
                    f"Two ports ({shown(current)} and {shown(given)}): ask about one port at a time.",
                    str(given),
                    example=PORT_EXAMPLE,
                )
            )
            return
        self.port, self.port_name = spec.number, spec.name

    def set_protocol(self, protocol: Protocol) -> None:
        """The protocol of the question; a second, different one is a problem."""
        if self.protocol is not None and self.protocol is not protocol:
            self.problems.append(
                Unreadable(
                    f"Two protocols ({self.protocol.lower()} and {protocol.lower()}): ask about one at a time.",
                    protocol.lower(),
                    example=PROTOCOL_EXAMPLE,
                )
            )
            return
        self.protocol = protocol
