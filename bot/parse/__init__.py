"""The request parser: what an on-call engineer types becomes a `Question`, or a `ParseError`.

A deterministic grammar (see `bot.parse.grammar`), not a guesser: it reads the ways people ask
("why can't pod web-7d9f reach svc api:8080 in shop", "frontend -> api.shop:8080",
"10.244.1.5 to 10.96.0.10:53/udp") and answers anything else with the closest valid form and an
example. Pure: no I/O.
"""

from bot.parse.errors import ParseError
from bot.parse.grammar import MAX_QUESTION_LENGTH, parse_question
from bot.parse.models import Protocol, Question, Ref, RefKind

__all__ = ["MAX_QUESTION_LENGTH", "ParseError", "Protocol", "Question", "Ref", "RefKind", "parse_question"]
