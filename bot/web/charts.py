"""Server-rendered SVG charts for the trends page: stacked bars of verdicts per week and one line per
node of conntrack fill (percent of nf_conntrack_max). Fixed sizes, escaped labels, no script."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from bot.history.trends import FillSample, WeekCount

W, H, PAD = 760, 240, 40
PALETTE = ("#1a73e8", "#d93025", "#f9ab00", "#1e8e3e", "#9334e6", "#e8710a", "#12b5cb", "#5f6368")
FONT = 'font-family="DejaVu Sans, Verdana, sans-serif" font-size="11"'


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _empty(what: str) -> str:
    return f'<p class="muted">No {escape(what)} recorded in this period.</p>'


def _legend(names: Sequence[str], y: float) -> str:
    out, x = [], PAD
    for i, name in enumerate(names):
        out.append(f'<rect x="{x}" y="{y:g}" width="10" height="10" fill="{_colour(i)}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9:g}" {FONT}>{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return "".join(out)


def weeks_chart(weeks: Sequence[WeekCount]) -> str:
    """Stacked bars: investigations per week, one colour per verdict code."""
    if not weeks:
        return _empty("investigations")
    codes = sorted({code for w in weeks for code in w.by_code})
    top = max(sum(w.by_code.values()) for w in weeks) or 1
    slot = (W - 2 * PAD) / len(weeks)
    bar = min(60.0, slot * 0.7)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 30}" role="img" aria-label="verdicts per week">']
    out.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#5f6368"/>')
    out.append(f'<text x="4" y="{PAD}" {FONT}>{top}</text><text x="4" y="{H - PAD}" {FONT}>0</text>')
    for i, week in enumerate(weeks):
        x = PAD + i * slot + (slot - bar) / 2
        y = float(H - PAD)
        for code in codes:
            n = week.by_code.get(code, 0)
            if not n:
                continue
            h = (H - 2 * PAD) * n / top
            y -= h
            out.append(
                f'<rect class="bar" data-week="{week.week.date().isoformat()}" data-code="{escape(code)}" data-count="{n}" '
                f'x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{_colour(codes.index(code))}"/>'
            )
        out.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" {FONT}>{week.week.strftime("%m-%d")}</text>')
    out.append(_legend(codes, H - 4))
    out.append("</svg>")
    return "".join(out)


def fill_chart(fill: dict[str, list[FillSample]]) -> str:
    """One line per node: conntrack entries as a percentage of the table's limit, over time."""
    samples = [s for node in fill.values() for s in node]
    if not samples:
        return _empty("conntrack readings")
    start = min(s.at for s in samples).timestamp()
    span = max(max(s.at for s in samples).timestamp() - start, 1.0)
    top = max(max(s.ratio for s in samples) * 100, 1.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 30}" role="img" aria-label="conntrack fill per node">'
    ]
    out.append(f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#5f6368"/>')
    out.append(f'<text x="2" y="{PAD}" {FONT}>{top:.1f}%</text><text x="4" y="{H - PAD}" {FONT}>0%</text>')
    for i, (node, points) in enumerate(fill.items()):
        coords = [
            (PAD + (W - 2 * PAD) * (s.at.timestamp() - start) / span, (H - PAD) - (H - 2 * PAD) * (s.ratio * 100) / top)
            for s in points
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(
            f'<polyline class="fill" data-node="{escape(node)}" data-last="{points[-1].count}/{points[-1].max}" '
            f'points="{path}" fill="none" stroke="{_colour(i)}" stroke-width="2"/>'
        )
        out.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{_colour(i)}"/>' for x, y in coords)
    out.append(_legend(list(fill), H - 4))
    out.append("</svg>")
    return "".join(out)
