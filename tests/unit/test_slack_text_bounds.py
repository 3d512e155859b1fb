"""The Slack text cleaner is bounded before any pattern runs, and every pattern in it is linear.

Linearity is checked on the patterns' structure (Python's own regex parser), not on a clock: a
pattern backtracks polynomially when a quantifier repeats a quantified part (``(a+)+``) or when two
unbounded quantifiers can trade the same characters through what lies between them
(``[a-z0-9]*[a-z][a-z0-9]*``, the emoji pattern that took 8.8 s on a 39,000-character mention).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from bot.parse import slack_text

try:  # Python 3.11+
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

ALPHABET = frozenset(chr(c) for c in range(0x300))
REPEATS = {sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT}
UNBOUNDED = sre_constants.MAXREPEAT
CATEGORY_TESTS = {
    sre_constants.CATEGORY_DIGIT: str.isdigit,
    sre_constants.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
    sre_constants.CATEGORY_SPACE: str.isspace,
    sre_constants.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    sre_constants.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    sre_constants.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
}


def _chars(op: Any, av: Any, ignore_case: bool) -> frozenset[str] | None:
    """The characters one single-character item matches (None when the item is not one character)."""
    if op == sre_constants.LITERAL:
        found = {chr(av)}
    elif op == sre_constants.NOT_LITERAL:
        found = set(ALPHABET - {chr(av)})
    elif op == sre_constants.ANY:
        found = set(ALPHABET - {"\n"})
    elif op == sre_constants.IN:
        negate = False
        found = set()
        for item_op, item_av in av:
            if item_op == sre_constants.NEGATE:
                negate = True
            elif item_op == sre_constants.LITERAL:
                found.add(chr(item_av))
            elif item_op == sre_constants.RANGE:
                found.update(chr(c) for c in range(item_av[0], item_av[1] + 1) if chr(c) in ALPHABET)
            elif item_op == sre_constants.CATEGORY:
                found.update(c for c in ALPHABET if CATEGORY_TESTS[item_av](c))
        if negate:
            found = set(ALPHABET - found)
    else:
        return None
    if ignore_case:
        found |= {c.swapcase() for c in found}
    return frozenset(found)


def _repeat_chars(op: Any, av: Any, ignore_case: bool) -> frozenset[str] | None:
    """For an unbounded repeat of one character class, that class."""
    if op not in REPEATS or av[1] != UNBOUNDED:
        return None
    body = list(av[2])
    if len(body) != 1:
        return None
    return _chars(*body[0], ignore_case)


def _has_unbounded_repeat(items: Any) -> bool:
    for op, av in items:
        if op in REPEATS and av[1] == UNBOUNDED:
            return True
        for child in _children(op, av):
            if _has_unbounded_repeat(child):
                return True
    return False


def _children(op: Any, av: Any) -> list[Any]:
    if op == sre_constants.SUBPATTERN:
        return [av[-1]]
    if op == sre_constants.BRANCH:
        return list(av[1])
    if op in REPEATS:
        return [av[2]]
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [av[1]]
    return []


def backtracking_hazards(pattern: re.Pattern[str]) -> list[str]:
    """What in `pattern` can backtrack polynomially (empty when it is linear)."""
    ignore_case = bool(pattern.flags & re.IGNORECASE)
    hazards: list[str] = []

    def walk(items: Any) -> None:
        sequence = list(items)
        for index, (op, av) in enumerate(sequence):
            if op in REPEATS and av[1] > 1 and _has_unbounded_repeat(av[2]):
                hazards.append("nested quantifiers")
            first = _repeat_chars(op, av, ignore_case)
            if first is not None:
                shared = first
                for later_op, later_av in sequence[index + 1 :]:
                    later = _repeat_chars(later_op, later_av, ignore_case)
                    if later is not None:
                        if shared & later:
                            hazards.append("two unbounded quantifiers share characters")
                        break
                    single = _chars(later_op, later_av, ignore_case)
                    if single is None:
                        break
                    shared = shared & single
                    if not shared:
                        break
            for child in _children(op, av):
                walk(child)

    walk(sre_parse.parse(pattern.pattern, pattern.flags))
    return hazards


def _module_patterns() -> dict[str, re.Pattern[str]]:
    return {name: value for name, value in vars(slack_text).items() if isinstance(value, re.Pattern)}


def test_the_checker_finds_the_quadratic_patterns() -> None:
    old_emoji = r"(?:(?<=\s)|^):(?:[a-z0-9_+'-]*[a-z][a-z0-9_+'-]*|[+-]1):(?::skin-tone-\d:)?(?=\s|$|[?!.,])"
    assert backtracking_hazards(re.compile(old_emoji))
    assert backtracking_hazards(re.compile(r"(a+)+$"))
    assert backtracking_hazards(re.compile(r"\s*\s*x"))
    assert not backtracking_hazards(re.compile(r"<[@#!][^<>]*>"))


@pytest.mark.parametrize("name", sorted(_module_patterns()))
def test_every_pattern_of_the_cleaner_is_linear(name: str) -> None:
    assert backtracking_hazards(_module_patterns()[name]) == []


class _Spy:
    """Stands in for a compiled pattern and records the length of every input it is given."""

    def __init__(self, pattern: re.Pattern[str], sizes: list[int]) -> None:
        self.pattern = pattern
        self.sizes = sizes

    def sub(self, repl: Any, text: str) -> str:
        self.sizes.append(len(text))
        return self.pattern.sub(repl, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pattern, name)


def test_a_39000_character_mention_is_refused_before_any_pattern_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    for name, pattern in _module_patterns().items():
        monkeypatch.setattr(slack_text, name, _Spy(pattern, sizes))
    mention = "<@U1> " + " ".join([":" + "a" * 30] * 1300)[:39_000]
    with pytest.raises(slack_text.TextTooLong) as refused:
        slack_text.clean_slack_text(mention)
    assert sizes == []  # no pattern saw the long text
    assert "characters long" in refused.value.message and str(slack_text.MAX_TEXT_LENGTH) in refused.value.message
    # Text within the bound: the patterns see at most a constant times the bound (arrows widen to " -> ").
    slack_text.clean_slack_text(("→" + ":" + "a" * 30 + " ") * (slack_text.MAX_TEXT_LENGTH // 34))
    assert sizes and max(sizes) <= 4 * slack_text.MAX_TEXT_LENGTH


def test_cleaning_still_removes_markup_and_emoji() -> None:
    assert slack_text.clean_slack_text("<!here> frontend :arrow_right: api :+1: :smile::skin-tone-2: :123:").split() == [
        "frontend",
        "->",
        "api",
        ":123:",
    ]
