"""The web UI's HTML, server-rendered with no script: every value from the cluster or from people goes
through `escape`, links carry the token only in their query string, and the stylesheet is a file
(`STYLE`, served at /ui/style.css) so the Content-Security-Policy allows no inline style or script."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from bot.history.search import SearchHit
from bot.history.trends import FillSample, Recurring, RunLine, WeekCount
from bot.history.views import InvestigationView
from bot.web.charts import fill_chart, weeks_chart

STYLE = """
body{font-family:"DejaVu Sans",Verdana,sans-serif;margin:0;color:#202124;background:#fafafa}
header{background:#1a73e8;color:#fff;padding:10px 24px}header a{color:#fff;margin-right:18px}
main{padding:16px 24px;max-width:1700px}h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:22px 0 8px}
.verdict{font-size:20px;font-weight:bold;padding:10px 14px;border-radius:6px;margin:8px 0}
.fail{background:#fde2e1;color:#a50e0e;border:2px solid #d93025}
.pass{background:#e6f4ea;color:#137333;border:2px solid #1e8e3e}
.picture{overflow-x:auto;background:#fff;border:1px solid #dadce0;padding:6px}.picture svg{max-width:100%;height:auto}
table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #dadce0;padding:4px 8px;text-align:left;vertical-align:top;font-size:13px}
.s-pass{color:#137333}.s-fail{color:#a50e0e;font-weight:bold}.s-warn{color:#b06000}.s-skip{color:#5f6368}
pre{white-space:pre-wrap;font-size:12px;margin:2px 0}.muted{color:#5f6368}
form input,form select{margin:0 10px 8px 0}.nothing{padding:40px;font-size:18px}
"""


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def _page(title: str, body: str, token: str | None) -> str:
    nav = ""
    if token:
        q = escape(urlencode({"t": token}))
        nav = f'<a href="/ui/search?{q}">Search</a><a href="/ui/digest?{q}">Trends</a>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        f'<title>{escape(title)} · kubereach</title><link rel="stylesheet" href="/ui/style.css"></head>'
        f"<body><header><strong>kubereach</strong> &nbsp; {nav}</header><main>{body}</main></body></html>"
    )


def nothing_page() -> str:
    """What anyone without a valid link sees: no data, no listing, one line saying what to do."""
    body = (
        '<p class="nothing" id="nothing">Nothing to show. This link is missing, expired or not valid for what it points '
        "at. Open a fresh link from the investigation's Slack thread.</p>"
    )
    return _page("no access", body, None)


def unavailable_page() -> str:
    """The history did not answer: say so, and what to do (nothing else is shown)."""
    body = '<p class="nothing" id="unavailable">The history database did not answer; try again in a minute.</p>'
    return _page("history unavailable", body, None)


def _link(path: str, token: str, **params: str) -> str:
    return escape(f"{path}?{urlencode({**params, 't': token})}")


def investigation_page(view: InvestigationView, picture_svg: str, runs: Sequence[RunLine], token: str) -> str:
    """One investigation: verdict, picture, every step with its evidence, re-runs, resolutions."""
    verdict = view.verdict
    failed = verdict is not None and verdict.code.value != "NO_FAULT_FOUND"
    head = verdict.code.value if verdict else (view.error or view.status.value)
    where = " · ".join(
        x for x in ((verdict.hop.value if verdict and verdict.hop else ""), (verdict.node or "") if verdict else "") if x
    )
    parts = [
        f"<h1>{escape(view.question)}</h1>",
        f'<p class="muted">{escape(view.id)} · asked by {escape(view.asked_by.name)} · {_when(view.started_at)}'
        f" · {escape(', '.join(view.namespaces) or 'no namespace')}</p>",
        f'<div class="verdict {"fail" if failed else "pass"}" id="verdict">{escape(head)}'
        f"{(' at ' + escape(where)) if where else ''}</div>",
    ]
    if verdict is not None:
        parts.append(f"<p>{escape(verdict.summary)}</p>")
        if verdict.remediation:
            parts.append("<h2>Fix</h2><pre>" + escape("\n".join(verdict.remediation)) + "</pre>")
    parts.append(f'<h2>Path</h2><div class="picture" id="picture">{picture_svg}</div>')
    rows = []
    for step in view.steps:
        evidence = "".join(f"<pre>{escape(e.kind)}: {escape(e.summary)}</pre>" for e in step.evidence)
        rows.append(
            f'<tr><td class="s-{escape(step.status.value)}">{escape(step.status.value)}</td><td>{escape(step.name)}</td>'
            f"<td>{escape(step.node or '')}</td><td>{escape(step.summary)}{evidence}</td></tr>"
        )
    parts.append(
        f'<h2>Steps ({len(view.steps)})</h2><table id="steps"><tr><th>status</th><th>step</th><th>node</th>'
        f"<th>what was seen</th></tr>{''.join(rows)}</table>"
    )
    run_rows = "".join(
        f'<tr><td><a href="{_link("/ui/i/" + r.id, token)}">{escape(r.id)}</a></td><td>{_when(r.started_at)}</td>'
        f"<td>{escape(r.code or '—')}</td><td>{escape(r.asked_by)}</td></tr>"
        for r in runs
    )
    parts.append(f'<h2>Runs of this question</h2><table id="runs">{run_rows}</table>')
    resolved = "".join(
        f"<li>{escape(r.by.name)} on {_when(r.at)}: {escape(r.note or '(no note)')}</li>" for r in view.resolutions
    )
    parts.append(f'<h2>Resolved</h2><ul id="resolutions">{resolved or "<li>not yet</li>"}</ul>')
    return _page(view.question, "".join(parts), token)


SEARCH_FIELDS = ("q", "namespace", "name", "verdict", "node", "channel", "asked_by", "since", "until")
"""The search form's fields: the words and the filters of `kubereach search`."""


def search_page(values: dict[str, str], hits: Sequence[SearchHit], problem: str | None, token: str) -> str:
    """The search form (the filters of `kubereach search`) and the investigations found in scope."""
    inputs = "".join(
        f'<label>{escape(name)} <input name="{escape(name)}" value="{escape(values.get(name, ""))}" size="14"></label>'
        for name in SEARCH_FIELDS
    )
    hidden = f'<input type="hidden" name="t" value="{escape(token)}">'
    form = f'<form method="get" action="/ui/search" id="search">{inputs}{hidden}<button>Search</button></form>'
    rows = "".join(
        f'<tr><td><a href="{_link("/ui/i/" + h.id, token)}">{escape(h.id)}</a></td><td>{_when(h.started_at)}</td>'
        f"<td>{escape(h.question)}</td><td>{escape(h.verdict_code.value if h.verdict_code else h.status)}</td>"
        f"<td>{escape(h.node or '')}</td><td>{escape(h.asked_by_name)}</td></tr>"
        for h in hits
    )
    result = (
        f'<p class="s-fail">{escape(problem)}</p>'
        if problem
        else f'<p id="found">{len(hits)} investigation(s)</p><table id="hits"><tr><th>id</th><th>when</th><th>question</th>'
        f"<th>verdict</th><th>node</th><th>asked by</th></tr>{rows}</table>"
    )
    return _page("search", f"<h1>Search the history</h1>{form}{result}", token)


def digest_page(
    weeks: Sequence[WeekCount], fill: dict[str, list[FillSample]], recurring: Sequence[Recurring], since: datetime, token: str
) -> str:
    """Trends since `since`: verdicts per week, conntrack fill per node, recurring problems."""
    rows = "".join(
        f"<tr><td>{r.count}</td><td>{escape(r.code)}</td><td>{escape(r.source)} → {escape(r.target)}</td>"
        f'<td><a href="{_link("/ui/i/" + r.last_id, token)}">{escape(r.last_id)}</a> ({_when(r.last_at)})</td></tr>'
        for r in recurring
    )
    body = (
        f"<h1>Trends since {_when(since)}</h1>"
        f'<h2>Verdicts per week</h2><div id="weeks">{weeks_chart(weeks)}</div>'
        f'<h2>Conntrack fill per node</h2><div id="conntrack">{fill_chart(fill)}</div>'
        f'<h2>Recurring problems</h2><table id="recurring"><tr><th>times</th><th>verdict</th><th>path</th><th>last</th></tr>'
        f"{rows or '<tr><td colspan=4>none</td></tr>'}</table>"
    )
    return _page("trends", body, token)
