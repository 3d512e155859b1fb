"""The path picture: an investigation drawn as pods, interfaces, bridge, node, NAT, overlay and underlay,
with the cause marked (`model` reads the result, `svg` draws it, `png` rasterises it for Slack)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.playbook.models import InvestigationResult
from bot.render.document import trace_rows
from bot.render.picture.model import PathPicture, PointState, path_picture
from bot.render.picture.png import svg_to_png
from bot.render.picture.svg import picture_svg

__all__ = ["PathPicture", "PointState", "path_picture", "picture_of", "picture_png", "picture_svg", "svg_to_png"]


def picture_of(result: InvestigationResult, trace: Sequence[Mapping[str, Any]] | None = None) -> PathPicture:
    """The picture of a finished investigation, with the trace's counts on its points when a trace ran
    (the result's own trace rows unless `trace` is given)."""
    return path_picture(
        source=result.source,
        target=result.target,
        verdict=result.verdict,
        steps=result.steps,
        findings=result.findings,
        per_source=result.per_source,
        trace=trace if trace is not None else trace_rows(result),
    )


def picture_png(picture: PathPicture) -> bytes:
    """The picture as PNG bytes (the SVG rasterised at its own size)."""
    return svg_to_png(picture_svg(picture))
