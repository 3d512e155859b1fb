"""The path picture as SVG: lanes stacked (one per source pod, so partial failures sit side by side),
points left to right in packet-path order, the cause in red with a thick border, points the packet
never reached in grey, trace counts under each point. Text is escaped and clipped; the layout is a
fixed grid, so the same `PathPicture` gives the same bytes. Fonts: DejaVu Sans (Debian's
fonts-dejavu-core), with generic fallbacks."""

from __future__ import annotations

from html import escape

from bot.render.picture.model import Badge, Lane, PathPicture, PathPoint, PointState, TraceMark

BOX_W = 150
BOX_H = 92
GAP = 26
MARGIN = 20
LANE_HEAD = 26
LANE_GAP = 22
TITLE_H = 64
BADGE_H = 30
LEGEND_H = 34
TRACE_H = 30
LINE_CHARS = 22
TITLE_CHARS = 90
FONT = "DejaVu Sans, Verdana, sans-serif"

FILL = {
    PointState.PASS: "#e6f4ea",
    PointState.WARN: "#fff4d6",
    PointState.FAIL: "#fde2e1",
    PointState.UNCHECKED: "#f1f3f4",
    PointState.NOT_REACHED: "#f8f9fa",
}
STROKE = {
    PointState.PASS: "#1e8e3e",
    PointState.WARN: "#b06000",
    PointState.FAIL: "#d93025",
    PointState.UNCHECKED: "#9aa0a6",
    PointState.NOT_REACHED: "#c4c7c5",
}
WORDS = {
    PointState.PASS: "ok",
    PointState.WARN: "warning",
    PointState.FAIL: "failed",
    PointState.UNCHECKED: "not checked",
    PointState.NOT_REACHED: "not reached",
}
RED = "#d93025"
INK = "#202124"
MUTED = "#5f6368"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int = 12,
    weight: str = "normal",
    fill: str = INK,
    anchor: str = "start",
    cls: str = "",
) -> str:
    klass = f' class="{cls}"' if cls else ""
    return (
        f'<text x="{x:g}" y="{y:g}" font-family="{FONT}" font-size="{size}" font-weight="{weight}" '
        f'fill="{fill}" text-anchor="{anchor}"{klass}>{escape(text)}</text>'
    )


def _trace_line(mark: TraceMark) -> str:
    arrow = {"in": "→", "out": "←", "ingress": "→", "egress": "←"}.get(mark.direction, "·")
    seen = f"{mark.packets} pkt" if mark.seen or mark.packets else "not seen"
    return f"{arrow} {mark.interface}: {seen}"


def _point(x: float, y: float, point: PathPoint, lane_index: int) -> list[str]:
    stroke = RED if point.marked else STROKE[point.state]
    width = 4 if point.marked else 1.5
    dash = ' stroke-dasharray="5 4"' if point.state is PointState.NOT_REACHED else ""
    marked = ' data-marked="true"' if point.marked else ""
    out = [
        f'<g class="point" data-lane="{lane_index}" data-key="{escape(point.key)}" data-hop="{escape(point.hop.value)}" '
        f'data-state="{point.state.value}"{marked}>',
        f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{FILL[point.state]}" '
        f'stroke="{stroke}" stroke-width="{width}"{dash}/>',
        _text(x + 8, y + 18, _clip(point.title, LINE_CHARS - 3), size=13, weight="bold", fill=RED if point.marked else INK),
    ]
    for i, line in enumerate(point.lines[:4]):
        out.append(_text(x + 8, y + 35 + 14 * i, _clip(line, LINE_CHARS), size=11, fill=MUTED))
    word = "✗ cause here" if point.marked else WORDS[point.state]
    out.append(
        _text(x + BOX_W - 8, y + BOX_H - 6, word, size=10, weight="bold" if point.marked else "normal", fill=stroke, anchor="end")
    )
    for i, mark in enumerate(point.trace[:2]):
        colour = RED if not (mark.seen or mark.packets) else INK
        out.append(
            _text(x + 4, y + BOX_H + 13 + 12 * i, _clip(_trace_line(mark), LINE_CHARS + 2), size=10, fill=colour, cls="trace")
        )
    out.append("</g>")
    return out


def _arrow(x1: float, x2: float, y: float, state: PointState) -> str:
    colour = STROKE[PointState.NOT_REACHED] if state is PointState.NOT_REACHED else "#5f6368"
    return (
        f'<line x1="{x1:g}" y1="{y:g}" x2="{x2 - 6:g}" y2="{y:g}" stroke="{colour}" stroke-width="2"/>'
        f'<polygon points="{x2:g},{y:g} {x2 - 8:g},{y - 5:g} {x2 - 8:g},{y + 5:g}" fill="{colour}"/>'
    )


def _lane(y: float, lane: Lane, index: int) -> list[str]:
    code = "" if not lane.code else f" · {lane.code}"
    colour = RED if any(p.marked for p in lane.points) else INK
    head = f"{lane.node or 'node ?'} · {lane.source}{code}"
    out = [f'<g class="lane" data-node="{escape(lane.node)}" data-source="{escape(lane.source)}">']
    out.append(_text(MARGIN, y + 16, _clip(head, TITLE_CHARS), size=13, weight="bold", fill=colour))
    top = y + LANE_HEAD
    for i, point in enumerate(lane.points):
        x = MARGIN + i * (BOX_W + GAP)
        out.extend(_point(x, top, point, index))
        if i + 1 < len(lane.points):
            out.append(_arrow(x + BOX_W, x + BOX_W + GAP, top + BOX_H / 2, lane.points[i + 1].state))
    out.append("</g>")
    return out


def _badges(y: float, badges: tuple[Badge, ...]) -> list[str]:
    out = []
    x = MARGIN
    for badge in badges:
        stroke = RED if badge.marked else STROKE[badge.state]
        label = f"{badge.label}: {'cause here' if badge.marked else WORDS[badge.state]}"
        width = 14 + 7 * len(label)
        marked = ' data-marked="true"' if badge.marked else ""
        out.append(
            f'<g class="badge" data-hop="{badge.hop.value}" data-state="{badge.state.value}"{marked}>'
            f'<rect x="{x}" y="{y:g}" width="{width}" height="22" rx="11" fill="{FILL[badge.state]}" stroke="{stroke}" '
            f'stroke-width="{3 if badge.marked else 1.2}"/>' + _text(x + 8, y + 15, label, size=11, fill=stroke) + "</g>"
        )
        x += width + 10
    return out


def _legend(y: float) -> list[str]:
    out = []
    x = MARGIN
    for state in (PointState.PASS, PointState.WARN, PointState.FAIL, PointState.NOT_REACHED, PointState.UNCHECKED):
        out.append(f'<rect x="{x}" y="{y:g}" width="14" height="14" rx="3" fill="{FILL[state]}" stroke="{STROKE[state]}"/>')
        out.append(_text(x + 20, y + 12, WORDS[state], size=11, fill=MUTED))
        x += 28 + 7 * len(WORDS[state])
    return out


def picture_svg(picture: PathPicture) -> str:
    """The picture as a standalone SVG document (UTF-8 text)."""
    columns = max((len(lane.points) for lane in picture.lanes), default=0)
    with_trace = any(p.trace for lane in picture.lanes for p in lane.points)
    lane_h = LANE_HEAD + BOX_H + (TRACE_H if with_trace else 0) + LANE_GAP
    width = max(2 * MARGIN + columns * BOX_W + max(columns - 1, 0) * GAP, 720)
    height = TITLE_H + BADGE_H + lane_h * max(len(picture.lanes), 1) + LEGEND_H + 14 * len(picture.notes) + MARGIN
    colour = RED if picture.failed else STROKE[PointState.PASS]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'data-verdict="{escape(picture.verdict_code)}">',
        f"<title>{escape(picture.title)}: {escape(picture.verdict_line)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        _text(MARGIN, 28, _clip(picture.title, TITLE_CHARS), size=18, weight="bold"),
        _text(MARGIN, 52, _clip(picture.verdict_line, TITLE_CHARS), size=15, weight="bold", fill=colour, cls="verdict"),
    ]
    out.extend(_badges(TITLE_H, picture.badges))
    y = TITLE_H + BADGE_H
    if not picture.lanes:
        out.append(_text(MARGIN, y + 30, "no path was probed: the investigation ended before any packet was sent", fill=MUTED))
    for index, lane in enumerate(picture.lanes):
        out.extend(_lane(y + index * lane_h, lane, index))
    y += lane_h * max(len(picture.lanes), 1)
    for note in picture.notes:
        out.append(_text(MARGIN, y + 10, note, size=11, fill=MUTED))
        y += 14
    out.extend(_legend(y + 8))
    out.append("</svg>")
    return "\n".join(out) + "\n"
