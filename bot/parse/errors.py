"""The one error the parser raises: what it could not read, the closest valid form, and an example.

The examples, one for each kind of mistake, are kept here with the error that shows them: several
grammar steps report the same kind of mistake (a port is read in the options, on a reference and on a
NodePort), and each message about it ends with the same example.
"""

from __future__ import annotations

from bot.errors import BadInput

EXAMPLE = "why can't frontend reach api:8080 in shop"
"""A whole question, shown when no example of the mistake's own kind fits."""
PORT_EXAMPLE = "frontend → api:8080"
PROTOCOL_EXAMPLE = "web-0 → 10.96.0.10:53/udp"
NAMESPACE_EXAMPLE = "frontend in shop → ledger in payments"
SOURCE_EXAMPLE = "deploy/frontend → svc/api:8080"
ENTRY_EXAMPLE = "why can't clients reach svc/web's load balancer"
NODEPORT_EXAMPLE = "outside → nodeport 30080 on node-2"
OUTSIDE_TARGET_EXAMPLE = "frontend → www.example.com:443"

SHOWN_LIMIT = 40
"""Longest piece of the person's text quoted back in a message, in characters."""


def shown(text: object, limit: int = SHOWN_LIMIT) -> str:
    """The text as quoted in a message: cut with an ellipsis when longer than `limit`."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


class ParseError(BadInput):
    """The question could not be read.

    `message` says what was wrong (naming the part it could not read, kept in `part` when there is
    one); `closest_form` is the question rebuilt from what was understood, with ``?`` for what is
    missing (``frontend → ?``); `example` is a complete question of the same shape.
    """

    def __init__(self, message: str, *, closest_form: str, example: str, part: str | None = None) -> None:
        super().__init__(message, hint=f"closest valid form: {closest_form}   (for example: {example})")
        self.closest_form = closest_form
        self.example = example
        self.part = part


class Unreadable(ValueError):
    """Internal: one part of the text could not be read; the grammar turns it into a `ParseError`."""

    def __init__(self, message: str, part: str | None, *, example: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.part = part
        self.example = example

    def with_example(self, example: str) -> Unreadable:
        """The same problem ending with `example`: a reference or port read alone has none, and the
        grammar step that read it knows the question it belongs to."""
        return Unreadable(self.message, self.part, example=example)
