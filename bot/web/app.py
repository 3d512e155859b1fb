"""The web UI as a WSGI application, mounted by `kubereach serve` at ``/ui/`` beside ``/slack/events``.

Routes (GET only): ``/ui/i/<id>`` an investigation, ``/ui/search`` the history search, ``/ui/digest``
trends, ``/ui/style.css`` the stylesheet. Every route but the stylesheet needs ``?t=TOKEN`` (see
`bot.web.tokens`): without a valid token, or for an investigation outside the token's scope, the
answer is the same "nothing to show" page (403) — no listing, no search, no hint whether an id exists.
Every answer carries the security headers (`SECURITY_HEADERS`). The access log line names the route
and the status, never the query string (where the token is).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.errors import BadInput
from bot.history import service
from bot.history.cli import parse_since, parse_verdict
from bot.history.db import history_errors
from bot.history.errors import HistoryUnavailable, InvestigationNotFound
from bot.history.search import SearchFilters, search_investigations
from bot.history.trends import conntrack_fill, other_runs, recurring_problems, verdicts_per_week, visible_ids
from bot.render.picture import path_picture, picture_svg
from bot.web import pages
from bot.web.tokens import LinkSigner, Scope

log = logging.getLogger("kubereach.web")

PREFIX = "/ui"
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
HTML = "text/html; charset=utf-8"
MAX_QUERY_CHARS = 8192
MAX_FIELD_CHARS = 200
SEARCH_SCAN = 500
"""Hits read per search before the scope filter; at most `SEARCH_SHOWN` are shown."""
SEARCH_SHOWN = 50
TREND_DAYS = 56
_ROUTE = re.compile(r"^/ui/i/([^/]+)$")
INVESTIGATION_ID = re.compile(r"inv_[A-Za-z0-9_-]{1,40}")
StartResponse = Callable[..., Any]


class WebUi:
    """The read-only pages over the history, for holders of a valid link."""

    def __init__(
        self, sessions: sessionmaker[Session], signer: LinkSigner, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        """Read through `sessions`; check links with `signer`."""
        self._sessions = sessions
        self.signer = signer
        self._now = clock or (lambda: datetime.now(UTC))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request (and log its route and status, without the query string)."""
        path = str(environ.get("PATH_INFO") or "")
        try:
            status, content_type, body = self._answer(environ, path)
        except HistoryUnavailable as exc:
            log.warning("web: the history did not answer: %s", type(exc.__cause__ or exc).__name__)
            status, content_type, body = "503 Service Unavailable", HTML, pages.unavailable_page()
        data = body.encode("utf-8")
        log.info("web: %s %s %s", environ.get("REQUEST_METHOD"), _route_name(path), status.split(" ", 1)[0])
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data))), *SECURITY_HEADERS])
        return [data]

    def _answer(self, environ: dict[str, Any], path: str) -> tuple[str, str, str]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return "405 Method Not Allowed", HTML, pages.nothing_page()
        if path == f"{PREFIX}/style.css":
            return "200 OK", "text/css; charset=utf-8", pages.STYLE
        query_text = str(environ.get("QUERY_STRING") or "")
        if len(query_text) > MAX_QUERY_CHARS:
            return "414 URI Too Long", HTML, pages.nothing_page()
        query = {k: v[-1][:MAX_FIELD_CHARS] for k, v in urllib.parse.parse_qs(query_text).items() if k != "t"}
        token = urllib.parse.parse_qs(query_text).get("t", [""])[-1]
        scope = self.signer.verify(token)
        if scope is None:
            return "403 Forbidden", HTML, pages.nothing_page()
        found = _ROUTE.match(path)
        if found:
            return self._investigation(found.group(1), scope, token)
        if path == f"{PREFIX}/search":
            return self._search(query, scope, token)
        if path == f"{PREFIX}/digest":
            return self._digest(scope, token)
        return "404 Not Found", HTML, pages.nothing_page()

    def _investigation(self, investigation_id: str, scope: Scope, token: str) -> tuple[str, str, str]:
        if not INVESTIGATION_ID.fullmatch(investigation_id):
            return "403 Forbidden", HTML, pages.nothing_page()
        with history_errors("reading an investigation"), self._sessions() as session:
            try:
                view = service.get_investigation(session, investigation_id)
            except InvestigationNotFound:
                return "403 Forbidden", HTML, pages.nothing_page()
            if not scope.covers(view.namespaces, view.channel):
                return "403 Forbidden", HTML, pages.nothing_page()
            runs = other_runs(session, view, scope.covers)
        svg = ""
        if view.verdict is not None:
            drawn = path_picture(
                source=view.source.display if view.source else "?",
                target=view.target.display if view.target else "?",
                verdict=view.verdict,
                steps=view.steps,
                findings=view.findings,
            )
            svg = picture_svg(drawn)
        return "200 OK", HTML, pages.investigation_page(view, svg, runs, token)

    def _search(self, query: dict[str, str], scope: Scope, token: str) -> tuple[str, str, str]:
        now = self._now()
        try:
            filters = SearchFilters(
                namespace=query.get("namespace") or None,
                name=query.get("name") or None,
                node=query.get("node") or None,
                verdict_code=parse_verdict(query.get("verdict") or None),
                channel=query.get("channel") or None,
                asked_by=query.get("asked_by") or None,
                since=parse_since(query["since"], now) if query.get("since") else None,
                until=parse_since(query["until"], now) if query.get("until") else None,
            )
        except BadInput as exc:
            return "400 Bad Request", HTML, pages.search_page(query, [], f"{exc.message} ({exc.hint})", token)
        with history_errors("searching"), self._sessions() as session:
            hits = search_investigations(session, query.get("q", ""), filters, limit=SEARCH_SCAN)
            visible = visible_ids(session, [h.id for h in hits], scope.covers)
        shown = [h for h in hits if h.id in visible][:SEARCH_SHOWN]
        return "200 OK", HTML, pages.search_page(query, shown, None, token)

    def _digest(self, scope: Scope, token: str) -> tuple[str, str, str]:
        since = self._now() - timedelta(days=TREND_DAYS)
        with history_errors("reading trends"), self._sessions() as session:
            weeks = verdicts_per_week(session, since, scope.covers)
            fill = conntrack_fill(session, since, scope.covers)
            recurring = recurring_problems(session, since, scope.covers)
        return "200 OK", HTML, pages.digest_page(weeks, fill, recurring, since, token)


def _route_name(path: str) -> str:
    """The route for the log: investigation ids are kept (they are not secrets), nothing else from the URL."""
    if _ROUTE.match(path) or path in (f"{PREFIX}/search", f"{PREFIX}/digest", f"{PREFIX}/style.css"):
        return path[:80]
    return f"{PREFIX}/(other)"
