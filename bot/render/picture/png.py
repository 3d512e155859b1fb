"""SVG → PNG through cairosvg (Cairo): the same SVG gives the same bytes; no file or network access
(external references in the SVG are not fetched: the picture has none, and `unsafe` stays off)."""

from __future__ import annotations

import cairosvg


def svg_to_png(svg: str) -> bytes:
    """Rasterise `svg` at its own size."""
    data = cairosvg.svg2png(bytestring=svg.encode("utf-8"), unsafe=False)
    if not isinstance(data, bytes):  # svg2png returns bytes when no write_to is given
        raise TypeError("cairosvg returned no bytes")
    return data
