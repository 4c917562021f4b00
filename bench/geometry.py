"""Landmark filters per 1280×720 frame: each warp preset and each tint region.

    python -m bench.geometry [--repeats 30] [--out bench/results/geometry.json]

Times the filter's own work on one face (flow fit, warp or mask, recolour) plus
pasting its patch into the frame: what ``henshin convert`` spends in its filter
and composite stages for a landmark filter. Tracking is not included (see
bench.convert). The face is the sample clip's astronaut at the clip's default
size; landmarks come from the face mesh once. Median with min–max over repeats,
after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import report, sample_face
from henshin.engine.composite import paste_patches
from henshin.filters.base import LandmarkFilter
from henshin.filters.geometry.tint import TintFilter, TintParams
from henshin.filters.geometry.warp import BUILTIN_PRESETS, WarpFilter, WarpParams
from henshin.types import FaceContext

TINTS = (("lips", "#b03050"), ("irises", "#3070d0"), ("skin", "auto"))


def _time(filt: LandmarkFilter, image: np.ndarray, points: np.ndarray, repeats: int) -> dict[str, float]:
    for _ in range(3):
        paste_patches(image, filt.edit(image, [FaceContext(0, landmarks=points)]))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        paste_patches(image, filt.edit(image, [FaceContext(0, landmarks=points)]))
        runs.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(runs), 2), "min_ms": round(min(runs), 2),
            "max_ms": round(max(runs), 2)}


def measure(width: int = 1280, height: int = 720, repeats: int = 30) -> dict[str, Any]:
    """Milliseconds per frame for each warp preset and tint region, as a JSON-ready dict."""
    image, face = sample_face(width, height)
    points = face.landmarks
    eye_dist = float(np.linalg.norm(points[468, :2] - points[473, :2]))
    figures: dict[str, Any] = {"frame": {"width": width, "height": height, "faces": 1,
                                         "eye_distance_px": round(eye_dist, 1)},
                               "repeats": repeats, "warp": {}, "tint": {}}
    for preset in BUILTIN_PRESETS:
        figures["warp"][preset] = _time(WarpFilter(WarpParams(preset=preset)), image, points, repeats)
    for region, color in TINTS:
        figures["tint"][region] = _time(TintFilter(TintParams(region=region, color=color)), image, points, repeats)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("bench/results/geometry.json"))
    args = parser.parse_args()
    figures = measure(args.width, args.height, args.repeats)
    rows = [(f"warp {k} ms/frame", f"{v['median_ms']:.2f} ({v['min_ms']:.2f}–{v['max_ms']:.2f})")
            for k, v in figures["warp"].items()]
    rows += [(f"tint {k} ms/frame", f"{v['median_ms']:.2f} ({v['min_ms']:.2f}–{v['max_ms']:.2f})")
             for k, v in figures["tint"].items()]
    report(f"landmark filters {args.width}x{args.height}, one face", figures, rows, args.out)


if __name__ == "__main__":
    main()
