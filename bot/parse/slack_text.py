"""Turn a Slack message (or any pasted text) into plain text the lexer can split.

Slack sends mentions as ``<@U123>``, channels as ``<#C1|name>``, specials as ``<!here>``, links as
``<http://host|label>``, escapes ``& < >`` as entities, and people paste backticks, bold markers,
smart quotes, non-breaking spaces, emoji shortcodes and typographic arrows. All of that is removed or
mapped to ASCII here, before any grammar is applied.

The input is bounded first (`MAX_TEXT_LENGTH`, a `TextTooLong` beyond it) and every pattern is linear
in its input: no nested or overlapping quantifiers, so no text can make the cleaner backtrack.
"""

from __future__ import annotations

import re

from bot.errors import BadInput

MAX_TEXT_LENGTH = 8000
"""The longest message the cleaner takes (Slack markup included); a question is far shorter."""


class TextTooLong(BadInput):
    """A message longer than `MAX_TEXT_LENGTH`: refused before any pattern runs."""

    def __init__(self, length: int) -> None:
        super().__init__(
            f"The message is {length} characters long; kubereach reads at most {MAX_TEXT_LENGTH}.",
            hint="ask about one source and one target, e.g. `why can't frontend reach api`",
        )
        self.length = length


_MENTION = re.compile(r"<[@#!][^<>]*>")
_LINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^<>|]*)(?:\|([^<>]*))?>")
_URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/?#\s]*@)?([^/?#\s]*)", re.IGNORECASE)
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)

_ARROW_SHORTCODES = re.compile(r":(?:arrow_right|right_arrow|point_right|arrow_forward|heavy_right_arrow|long_arrow_right):")
_BACK_ARROW_SHORTCODES = re.compile(r":(?:arrow_left|left_arrow|point_left|long_arrow_left):")
_EMOJI_SHORTCODE = re.compile(r"(?:(?<=\s)|^):([a-z0-9_+'-]+):(?::skin-tone-\d:)?(?=\s|$|[?!.,])")
"""``:name:`` between spaces; the name must hold a letter or be ``+1``/``-1`` (checked in `_emoji`, so
the pattern needs no overlapping quantifiers)."""
_LETTER = re.compile(r"[a-z]")

_CHARACTER_MAP = str.maketrans(
    {
        # quotes and apostrophes
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        # dashes (autocorrect turns -- into an em dash and - into an en dash)
        "\u2013": "-",
        "\u2014": "--",
        "\u2212": "-",
        "\u2010": "-",
        "\u2011": "-",
        # arrows
        "\u2192": " -> ",
        "\u27f6": " -> ",
        "\u27a1": " -> ",
        "\u2794": " -> ",
        "\u279c": " -> ",
        "\u279d": " -> ",
        "\u279e": " -> ",
        "\u21d2": " -> ",
        "\u27f9": " -> ",
        "\u21e8": " -> ",
        "\u21a6": " -> ",
        "\u219b": " -> ",  # ↛ "does not reach": still source first
        "\u21cf": " -> ",  # ⇏
        "\u2933": " -> ",  # ⤳
        "\u21dd": " -> ",  # ⇝
        "\u2190": " <- ",
        "\u27f5": " <- ",
        "\u2b05": " <- ",
        "\u21d0": " <- ",
        # spaces
        "\u00a0": " ",
        "\u2000": " ",
        "\u2001": " ",
        "\u2002": " ",
        "\u2003": " ",
        "\u2004": " ",
        "\u2005": " ",
        "\u2006": " ",
        "\u2007": " ",
        "\u2008": " ",
        "\u2009": " ",
        "\u200a": " ",
        "\u202f": " ",
        "\u205f": " ",
        "\u3000": " ",
        # invisible characters
        "\u200b": "",
        "\u200c": "",
        "\u200d": "",
        "\u2060": "",
        "\ufeff": "",
        "\ufe0e": "",
        "\ufe0f": "",
        # formatting markers
        "`": " ",
        "*": "",
        "~": "",
    }
)


SCHEME_PORTS: dict[str, int] = {"http": 80, "https": 443, "ws": 80, "wss": 443}
"""The port a URL without one means, by scheme (``https://www.example.com/path`` → 443)."""


def url_host(url: str) -> str:
    """The ``host[:port]`` of a URL (``http://api.shop:8080/x`` → ``api.shop:8080``); other text as is."""
    match = _URL_HOST.match(url)
    if match is None:
        return url
    return match.group(1)


def url_address(url: str) -> str:
    """The ``host:port`` a URL connects to: its own port, else its scheme's (``https://x/path`` →
    ``x:443``); text that is not a URL of a known scheme as `url_host` gives it."""
    host = url_host(url)
    scheme, separator, _ = url.partition("://")
    default = SCHEME_PORTS.get(scheme.lower()) if separator else None
    if default is None or not host:
        return host
    after_address = host.rpartition("]")[2] if host.startswith("[") else host
    return host if ":" in after_address else f"{host}:{default}"


def _link_text(match: re.Match[str]) -> str:
    """A link as the person typed it: the label when there is one (Slack labels a bare domain with
    itself), else the URL's host and port (a URL typed with its scheme means that scheme's port)."""
    target, label = match.group(1), match.group(2)
    if label:
        text = label.strip()
        return f" {url_address(text)} "
    if _MAILTO.match(target):
        return f" {_MAILTO.sub('', target)} "
    return f" {url_address(target)} "


def _emoji(match: re.Match[str]) -> str:
    name = match.group(1)
    if name in ("+1", "-1") or _LETTER.search(name):
        return " "
    return match.group(0)


def clean_slack_text(text: str) -> str:
    """Strip Slack markup and typography from a message, leaving plain ASCII-ish words.

    Mentions, channel references and ``<!here>`` are removed; a link becomes its label (or its host
    when it has none); entities are unescaped; code markers, bold and strike markers, invisible
    characters and emoji shortcodes go; smart quotes, dashes, arrows and exotic spaces become ASCII.
    Raises `TextTooLong` (before any pattern runs) for text over `MAX_TEXT_LENGTH` characters.
    """
    if len(text) > MAX_TEXT_LENGTH:
        raise TextTooLong(len(text))
    text = _MENTION.sub(" ", text)
    text = _LINK.sub(_link_text, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    text = text.translate(_CHARACTER_MAP)
    text = _ARROW_SHORTCODES.sub(" -> ", text)
    text = _BACK_ARROW_SHORTCODES.sub(" <- ", text)
    return _EMOJI_SHORTCODE.sub(_emoji, text)
