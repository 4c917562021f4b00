"""The pictures in docs/: the built-in styles' contact sheet and the README's before/after.

    python docs/make_pictures.py styles [--out docs/styles.jpg] [--tile 128] [--overwrite]
    python docs/make_pictures.py demo [--out docs/before-after.jpg] [--overwrite]

``styles`` runs every built-in style through the engine (tracking, alignment, the style
filter, compositing: what ``henshin convert`` does) on the sample clip's face photo
(scikit-image's astronaut) and on a second portrait (Grace Hopper, shipped with
matplotlib; left out where matplotlib is not installed), and lays the faces out with
each style's number and name. ``demo`` puts a frame of demo/sample.mp4 beside the same
frame of demo/styled.mp4, cut to the head and shoulders (run ``make demo`` first). Files are written through
``henshin.outputs``: never over an existing file without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

DOCS = Path(__file__).resolve().parent
LABEL_H = 18  # pixels under each tile for its caption


def portraits() -> dict[str, np.ndarray]:
    """The faces to show, (H, W, 3) uint8 RGB: the sample's photo and, where available, one more."""
    from henshin.samples import portrait

    faces = {"astronaut": portrait()}
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            data = np.frombuffer(f.read(), np.uint8)
        faces["hopper"] = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    except (ImportError, OSError, ValueError):
        print(
            "matplotlib's grace_hopper.jpg is not here: the sheet shows the astronaut only",
            file=sys.stderr,
        )
    return faces


def styled_faces(image: np.ndarray, styles: list[int], tile: int) -> list[np.ndarray]:
    """``image`` through each style (and first as it is), each cut to a square around the face."""
    from henshin.engine.chains import ChainRequest, FilterGraph
    from henshin.engine.live import process_frame
    from henshin.engine.smoothing import OneEuroSmoother
    from henshin.engine.stages import FaceStages
    from henshin.types import Frame

    graph = FilterGraph(ChainRequest("style", {}, {"style": "0"}))
    stages = FaceStages(graph, OneEuroSmoother(enabled=False))
    try:
        graph.enabled = False
        out = [process_frame(stages, Frame(image, 0)).output]
        graph.enabled = True
        for i, style in enumerate(styles):
            graph.set_param("style", str(style))
            work = process_frame(stages, Frame(image, i + 1))
            if not work.faces:
                raise SystemExit(
                    "no face found in a portrait; the sheet needs one face per picture"
                )
            out.append(work.output)
            box = work.faces[0].box
    finally:
        stages.close()
        graph.close()
    return [face_square(picture, box, tile) for picture in out]


def face_square(
    image: np.ndarray, box: tuple[float, float, float, float], tile: int, zoom: float = 1.35
) -> np.ndarray:
    """A ``tile``-sided square ``zoom`` times the box's longer side around its centre (1.35 of a
    face box: some hair and chin), clamped to the image."""
    x0, y0, x1, y1 = box
    side = int(max(x1 - x0, y1 - y0) * zoom)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - (0.05 * side if zoom > 1 else 0)
    left = int(np.clip(cx - side / 2, 0, max(image.shape[1] - side, 0)))
    top = int(np.clip(cy - side / 2, 0, max(image.shape[0] - side, 0)))
    crop = image[top : top + side, left : left + side]
    return cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)


def caption(tiles: list[np.ndarray], text: str) -> np.ndarray:
    """Tiles side by side with ``text`` on a white strip underneath."""
    row = np.hstack(tiles)
    strip = np.full((LABEL_H, row.shape[1], 3), 255, np.uint8)
    cv2.putText(
        strip, text, (4, LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA
    )
    return np.vstack([row, strip])


def grid(cells: list[np.ndarray], columns: int) -> np.ndarray:
    """Cells of one size in rows of ``columns``, white where the last row is short, 2 px apart."""
    h, w = cells[0].shape[:2]
    rows = -(-len(cells) // columns)
    sheet = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = cell
    return sheet


def contact_sheet(tile: int, columns: int) -> np.ndarray:
    """Every built-in style on every portrait: one captioned cell per style, the originals first."""
    from henshin.filters.style.filter import STYLE_NAMES

    styles = list(range(len(STYLE_NAMES)))
    per_face = [styled_faces(image, styles, tile) for image in portraits().values()]
    cells = [caption([faces[0] for faces in per_face], "original")]
    for k, style in enumerate(styles):
        cells.append(caption([faces[k + 1] for faces in per_face], f"{style} {STYLE_NAMES[style]}"))
    return grid(cells, columns)


def before_after(sample: Path, styled: Path, at: float, height: int) -> np.ndarray:
    """The frame at ``at`` (0..1 of the clip) of the sample and of the styled clip, side by side,
    cut to the head and shoulders (the face is found in the sample's frame by henshin's tracker)."""
    import av

    from henshin.engine.tracking import FaceTracker, TrackerConfig

    frames = []
    for path in (sample, styled):
        with av.open(str(path)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        frames.append(decoded[min(int(at * len(decoded)), len(decoded) - 1)])
    faces = FaceTracker(TrackerConfig()).track(frames[0]).faces
    if not faces:
        raise SystemExit(f"no face found in {sample} at {at}; try another --at")
    x0, y0, x1, y1 = faces[0].box
    side = 2.4 * max(x1 - x0, y1 - y0)
    box = (
        (x0 + x1 - side) / 2,
        (y0 + y1) / 2 - 0.4 * side,
        (x0 + x1 + side) / 2,
        (y0 + y1) / 2 + 0.6 * side,
    )
    return np.hstack([face_square(f, box, height, zoom=1.0) for f in frames])


def save(image: np.ndarray, path: Path, overwrite: bool) -> None:
    """Encode by suffix (JPEG quality 72) and write through henshin's output rules."""
    from henshin.outputs import check_writable, write_atomic

    check_writable(path, overwrite=overwrite, what="picture")
    ok, data = cv2.imencode(
        path.suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 72]
    )
    if not ok:
        raise SystemExit(f"cannot encode {path}; use a .jpg or .png name")
    write_atomic(path, data.tobytes(), "picture")
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]}, {len(data) // 1024} KB)")


def main() -> int:
    """Parse the command line and write the picture asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="picture", required=True)
    styles = sub.add_parser("styles", help="every built-in style on two faces")
    styles.add_argument("--out", type=Path, default=DOCS / "styles.jpg")
    styles.add_argument("--tile", type=int, default=100, help="face side in pixels")
    styles.add_argument("--columns", type=int, default=6)
    demo = sub.add_parser("demo", help="a frame of demo/sample.mp4 beside demo/styled.mp4")
    demo.add_argument("--out", type=Path, default=DOCS / "before-after.jpg")
    demo.add_argument("--sample", type=Path, default=Path("demo/sample.mp4"))
    demo.add_argument("--styled", type=Path, default=Path("demo/styled.mp4"))
    demo.add_argument("--at", type=float, default=0.3, help="where in the clip, 0..1")
    demo.add_argument("--height", type=int, default=320, help="side of each half in pixels")
    for p in (styles, demo):
        p.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    args = parser.parse_args()
    if args.picture == "styles":
        image = contact_sheet(args.tile, args.columns)
    else:
        for path in (args.sample, args.styled):
            if not path.is_file():
                raise SystemExit(f"{path} does not exist; run `make demo` first")
        image = before_after(args.sample, args.styled, args.at, args.height)
    save(image, args.out, args.overwrite)
    return 0


if __name__ == "__main__":
    from henshin.errors import HenshinError

    try:
        sys.exit(main())
    except HenshinError as exc:  # a picture that exists, a folder that does not: one sentence
        sys.exit(f"make_pictures: {exc}")
