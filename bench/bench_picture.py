"""The path picture: drawing a recorded lab investigation (model + SVG) and rasterising it (cairosvg),
next to Debian's headless Chromium rendering the same SVG to PNG (`chromium --headless --screenshot`)
in the same run. No root needed.

    .venv/bin/python bench/bench_picture.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.render.picture import picture_of, picture_svg, svg_to_png  # noqa: E402
from tests.unit.test_path_picture import result_from_document  # noqa: E402

RECORDED = REPO / "tests" / "unit" / "fixtures" / "pictures"
CHROMIUM = "/usr/bin/chromium"


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    """Print the medians (ms) of drawing and rasterising each recorded result, and Chromium's."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--chromium-runs", type=int, default=5)
    args = parser.parse_args()
    for name in ("ok", "overlay", "veth"):
        result = result_from_document(json.loads((RECORDED / f"{name}.json").read_text()))
        draw, raster = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            svg = picture_svg(picture_of(result))
            middle = time.perf_counter()
            png = svg_to_png(svg)
            draw.append(middle - start)
            raster.append(time.perf_counter() - middle)
        chrome: list[float] = []
        if Path(CHROMIUM).exists():
            with tempfile.TemporaryDirectory() as where:
                source, out = Path(where) / "p.svg", Path(where) / "p.png"
                source.write_text(svg)
                width, height = svg.split('width="', 1)[1].split('"')[0], svg.split('height="', 1)[1].split('"')[0]
                for _ in range(args.chromium_runs):
                    start = time.perf_counter()
                    subprocess.run(
                        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},{height}",
                         f"--screenshot={out}", source.as_uri()],
                        capture_output=True, check=True, timeout=120,
                    )  # fmt: skip
                    chrome.append(time.perf_counter() - start)
        reference = f"chromium --screenshot {_median_ms(chrome):7.1f} ms" if chrome else "chromium not installed"
        total = _median_ms(draw) + _median_ms(raster)
        ratio = f"{total / _median_ms(chrome):.3f}x" if chrome else "-"
        print(
            f"{name:8s} draw (model+SVG) {_median_ms(draw):6.2f} ms  PNG (cairosvg) {_median_ms(raster):6.1f} ms "
            f"[{len(png) // 1024} KiB]  | {reference} | {ratio}"
        )


if __name__ == "__main__":
    main()
