"""Split cleaned text into lowercase words.

Arrows written without spaces (``web->api``, ``a=>b``, ``x<-y``) become words of their own; commas,
brackets and quotes separate words; apostrophes vanish (``can't`` → ``cant``); punctuation and
formatting at the edges of a word go (``api:8080?!`` → ``api:8080``, ``_api_`` → ``api``). What is
left of a word that has no letter or digit is dropped. One name alone in brackets after a reference
names its namespace, as incident channels write it (``ledger (prod)`` → ``ledger in prod``). A
possessive stays a word of its own (``web's nodeport`` → ``web``, ``'s``, ``nodeport``), so that the
grammar can tie what follows to the name; contractions (``it's``, ``what's``) do not split.
"""

from __future__ import annotations

import re

_FORWARD_ARROW = re.compile(r"[-=]+>")
_BACKWARD_ARROW = re.compile(r"<[-=]+")
_SEPARATORS = re.compile(r"[,;(){}\"|]")
_BRACKETED_NAME = re.compile(r"\(\s*([a-z][-a-z0-9]*)\s*\)")
_ARROWS = frozenset({"->", "<-", ">"})
POSSESSIVE = "'s"
"""The word a possessive ``'s`` becomes (``web's`` → ``web`` ``'s``)."""
_CONTRACTIONS = frozenset({"it", "that", "what", "there", "here", "who", "let", "he", "she", "where", "how", "why", "when"})


def _keeps_leading(char: str) -> bool:
    return char.isalnum() or char in "-/[@"


def _strip_edges(word: str) -> str:
    start = 0
    while start < len(word) and not _keeps_leading(word[start]):
        start += 1
    end = len(word)
    keep_bracket = "[" in word
    while end > start and not (word[end - 1].isalnum() or (keep_bracket and word[end - 1] == "]")):
        end -= 1
    return word[start:end]


def lex(text: str) -> list[str]:
    """Split text (already cleaned of Slack markup) into the grammar's words, lowercased."""
    text = text.lower()
    text = _BRACKETED_NAME.sub(r" in \1 ", text)
    text = _FORWARD_ARROW.sub(" -> ", text)
    text = _BACKWARD_ARROW.sub(" <- ", text)
    text = _SEPARATORS.sub(" ", text)
    words: list[str] = []
    for chunk in text.split():
        if chunk in _ARROWS:
            words.append("->" if chunk == ">" else chunk)
            continue
        whole = _strip_edges(chunk)
        possessive = whole.endswith(POSSESSIVE) and whole[: -len(POSSESSIVE)] not in _CONTRACTIONS
        word = _strip_edges((whole[: -len(POSSESSIVE)] if possessive else chunk).replace("'", ""))
        if any(char.isalnum() for char in word):
            words.append(word)
            if possessive:
                words.append(POSSESSIVE)
    return words


def word_at(words: list[str], index: int) -> str | None:
    """The word at `index`, or None past the end: what follows a word, for the steps that look ahead."""
    return words[index] if index < len(words) else None
