"""Semantic regions from landmarks: soft masks, the tint filter, regions in the compositor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from henshin.cli.main import main
from henshin.engine.align import ffhq_quad, quad_matrix
from henshin.engine.composite import CompositeParams, composite, paste_patches
from henshin.engine.tracking import FaceTracker
from henshin.errors import OptionError
from henshin.filters.base import parse_params
from henshin.filters.geometry.tint import TintFilter, TintParams
from henshin.kernels import landmarks as lm
from henshin.kernels.color import chroma_gate, recolor
from henshin.kernels.masks import blur, fill_polygon
from henshin.kernels.regions import REGIONS, region_box, region_mask, shape_polygon
from henshin.kernels.warp import crop_from_frame, quad_roi
from henshin.samples import portrait
from henshin.types import AlignedFace, FaceContext, FilterSpec

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut at twice the size (eye distance ≈ 85 px, lips 4–10 px thick) and her landmarks."""
    image = cv2.resize(portrait(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    tracker = FaceTracker()
    try:
        (found,) = tracker(image)
    finally:
        tracker.close()
    return image, found.landmarks


def _mid(a: tuple[int, ...], b: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    return (points[list(a), :2] + points[list(b), :2]) * 0.5


def _toward(idx: tuple[int, ...], points: np.ndarray, amount: float = 0.5) -> np.ndarray:
    xy = points[list(idx), :2]
    return xy + (xy.mean(0) - xy) * amount


def _distance(xy: np.ndarray, loop: tuple[int, ...], points: np.ndarray) -> float:
    outline = points[list(loop), :2].astype(np.float32)
    return abs(cv2.pointPolygonTest(outline, (float(xy[0]), float(xy[1])), True))


def inside_points(points: np.ndarray) -> dict[str, np.ndarray]:
    """Points well inside each region, from its landmarks."""
    # upper chain against lower chain, leaving out the two ends where they meet
    brow = lambda loop: _mid(loop[1:4], loop[::-1][1:4], points)  # noqa: E731
    nose = points[lm.NOSE_TIP, :2]
    cheeks = np.stack([(points[234, :2] + nose) / 2, (points[454, :2] + nose) / 2, nose])
    return {
        # between the outer and inner outline, a feather or more from both
        "lips": np.array([p for p in _mid(lm.LIPS_OUTER, lm.LIPS_INNER, points)
                          if min(_distance(p, lm.LIPS_OUTER, points), _distance(p, lm.LIPS_INNER, points)) > FEATHER]),
        "inner_mouth": _toward(lm.LIPS_INNER, points, 0.8),
        "eyes": np.concatenate([_toward(lm.LEFT_EYE, points), _toward(lm.RIGHT_EYE, points)]),
        "irises": points[[lm.LEFT_IRIS_CENTER, lm.RIGHT_IRIS_CENTER], :2],
        "brows": np.concatenate([brow(lm.LEFT_BROW), brow(lm.RIGHT_BROW)]),
        "skin": cheeks,
        "oval": cheeks,
        # the chin under the lower lip, and beside each mouth corner towards the jaw
        "beard": np.stack([(points[152, :2] + points[17, :2]) / 2, (points[61, :2] * 2 + points[172, :2]) / 3,
                           (points[291, :2] * 2 + points[397, :2]) / 3]),
    }


FEATHER = 2.5  # px: TintParams' default, 0.03 eye distances, on this face


def _full_mask(points: np.ndarray, region: str, shape: tuple[int, int], feather: float = FEATHER) -> np.ndarray:
    full = np.zeros(shape, np.float32)
    roi = region_box(points, region, feather, shape)
    x0, y0, x1, y1 = roi
    full[y0:y1, x0:x1] = region_mask(points, region, roi, feather)
    return full


def _at(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return cv2.remap(mask, xy[None, :, 0].astype(np.float32), xy[None, :, 1].astype(np.float32), cv2.INTER_LINEAR)[0]


# Pairs that overlap by design: the iris lies inside the eye; the oval holds every feature.
_NESTED = {frozenset(("eyes", "irises")), frozenset(("beard", "skin"))}  # and the beard area is skin


def test_each_region_mask_covers_its_landmarks_and_not_the_others(face):
    image, points = face
    inside = inside_points(points)
    masks = {r: _full_mask(points, r, image.shape[:2]) for r in REGIONS}
    for region, mask in masks.items():
        assert _at(mask, inside[region]).min() > 0.6, region
        for other, xy in inside.items():
            if other == region or "oval" in (region, other) or frozenset((region, other)) in _NESTED:
                continue
            assert _at(mask, xy).max() < 0.1, (region, other)


def _mask_by_definition(points: np.ndarray, region: str, roi: tuple[int, int, int, int], feather: float) -> np.ndarray:
    """A region's mask shape by shape in float masks: include ∩ clip − exclude, then the blur."""
    spec = REGIONS[region]
    x0, y0, x1, y1 = roi

    def union(names: tuple[str, ...], grow: float = 0.0) -> np.ndarray:
        fills = [fill_polygon(shape_polygon(points, n, grow), (y1 - y0, x1 - x0), (x0, y0)) for n in names]
        return np.maximum.reduce(fills)

    mask = union(spec.include)
    if spec.clip:
        mask = mask * union(spec.clip)
    if spec.exclude:
        mask = mask * (1.0 - union(spec.exclude, feather if spec.exclude_grow else 0.0))
    return blur(mask, feather / 3.0)


def test_a_numpy_mask_is_its_shapes_filled_one_by_one_combined_then_blurred(face):
    """The fast path paints the shapes into byte masks together and must give the definition's bytes."""
    image, points = face
    jittered = points + np.random.default_rng(0).normal(0, 1.5, points.shape)
    for pts in (points, jittered):
        for region in REGIONS:
            for feather in (0.5, FEATHER, 6.0):
                roi = region_box(pts, region, feather, image.shape[:2])
                expected = _mask_by_definition(pts, region, roi, feather)
                assert np.array_equal(region_mask(pts, region, roi, feather), expected), (region, feather)


def test_region_edges_lie_on_the_landmark_outlines(face):
    image, points = face
    outlines = {"lips": lm.LIPS_OUTER, "inner_mouth": lm.LIPS_INNER, "eyes": lm.LEFT_EYE + lm.RIGHT_EYE,
                "brows": lm.LEFT_BROW + lm.RIGHT_BROW, "oval": lm.FACE_OVAL}
    for region, loop in outlines.items():
        values = _at(_full_mask(points, region, image.shape[:2]), points[list(loop), :2])
        # a soft edge centred on the outline: about one half on it
        assert 0.25 < np.median(values) < 0.75, (region, np.median(values))


def test_skin_stays_off_the_features(face):
    image, points = face
    skin = _full_mask(points, "skin", image.shape[:2])
    for loop in (lm.LEFT_EYE, lm.RIGHT_EYE, lm.LIPS_OUTER, lm.LEFT_BROW):
        assert _at(skin, points[list(loop), :2]).max() < 0.1


def test_torch_masks_and_colours_match_numpy(face):
    image, points = face
    for region in REGIONS:
        roi = region_box(points, region, FEATHER, image.shape[:2])
        ref = region_mask(points, region, roi, FEATHER)
        got = region_mask(torch.from_numpy(points.astype(np.float64)), region, roi, FEATHER)
        assert isinstance(got, torch.Tensor)
        # the fills differ at a few edge pixels only
        assert np.abs(got.numpy() - ref).sum() < 0.08 * ref.sum(), region
    roi = region_box(points, "lips", FEATHER, image.shape[:2])
    x0, y0, x1, y1 = roi
    pixels, mask = image[y0:y1, x0:x1], region_mask(points, "lips", roi, FEATHER)
    for color in ((176.0, 48.0, 80.0), None):
        ref = recolor(pixels, mask, color)
        got = recolor(torch.from_numpy(pixels), torch.from_numpy(mask), color)
        assert np.abs(got.numpy() - ref).max() < 0.05
    gate = chroma_gate(torch.from_numpy(pixels), torch.from_numpy(mask)).numpy()
    assert np.abs(gate - chroma_gate(pixels, mask)).max() < 1e-3


def _mean_in(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = mask[..., None]
    return (image.astype(np.float64) * w).sum((0, 1)) / w.sum()


def test_lip_tint_moves_the_lips_to_the_colour_and_nothing_else(face):
    image, points = face
    filt = TintFilter(TintParams(region="lips", color="#b03050", strength=1.0))
    out = paste_patches(image, filt.edit(image, [FaceContext(0, landmarks=points)]))
    lips = _full_mask(points, "lips", image.shape[:2])
    core = lips > 0.9
    before, after = _mean_in(image, core), _mean_in(out, core)
    target = np.array([176, 48, 80])
    assert np.linalg.norm(after - target) < 0.5 * np.linalg.norm(before - target)
    changed = np.any(out != image, axis=2)
    assert not (changed & (lips == 0)).any()


def test_iris_colour_and_zero_strength(face):
    image, points = face
    blue = TintFilter(TintParams(region="irises", color="#3070d0", strength=1.0))
    out = paste_patches(image, blue.edit(image, [FaceContext(0, landmarks=points)]))
    irises = _full_mask(points, "irises", image.shape[:2]) > 0.9
    b0, b1 = _mean_in(image, irises), _mean_in(out, irises)
    assert b1[2] - b1[0] > b0[2] - b0[0] + 40  # much bluer than red now
    off = TintFilter(TintParams(region="irises", strength=0.0))
    assert np.array_equal(paste_patches(image, off.edit(image, [FaceContext(0, landmarks=points)])), image)


def test_skin_evening_lowers_colour_spread_on_the_skin(face):
    image, points = face
    out = paste_patches(image, TintFilter(TintParams(region="skin", color="auto", strength=1.0))
                        .edit(image, [FaceContext(0, landmarks=points)]))
    mask = _full_mask(points, "skin", image.shape[:2])
    # skin: inside the region and of skin colour (hair over the forehead is left alone)
    skin = (mask > 0.9) & (chroma_gate(image, mask) > 0.5)

    def spread(im: np.ndarray) -> np.ndarray:  # of the chromaticity r, g: colour without brightness
        rgb = im[skin].astype(float) + 1.0
        return (rgb[:, :2] / rgb.sum(1, keepdims=True)).std(0)

    assert (spread(out) < 0.6 * spread(image)).all()
    # light and shade stay: brightness keeps most of its spread
    luma = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[skin].astype(float).std()  # noqa: E731
    assert luma(out) > 0.7 * luma(image)


def test_tint_options_are_checked():
    with pytest.raises(OptionError, match="parameter color expects #rrggbb"):
        parse_params(TintParams, {"color": "pink"})
    with pytest.raises(OptionError, match="parameter region expects one of"):
        parse_params(TintParams, {"region": "ears"})
    with pytest.raises(OptionError, match="strength expects a value from 0 to 1"):
        parse_params(TintParams, {"strength": "1.5"})
    assert TintFilter(parse_params(TintParams, {"color": "3070D0"})).params.color == "3070D0"


def test_compositor_region_keeps_a_filter_to_the_lips(face):
    image, points = face
    quad = ffhq_quad(points)
    aligned = AlignedFace(0, points, quad)
    matrix = quad_matrix(quad, 256)
    crop = crop_from_frame(image, matrix[None], 256)
    out = composite(image, [aligned], -crop, FilterSpec(), CompositeParams(region="lips"))
    changed = np.any(out != image, axis=2)
    roi = quad_roi(matrix, 256, image.shape[:2])
    lips = np.zeros(image.shape[:2], np.float32)
    lips[roi[1]:roi[3], roi[0]:roi[2]] = region_mask(points, "lips", roi, 0.25 * 0.08 * np.hypot(*quad[2:]))
    assert changed.sum() > 0.8 * (lips > 0.5).sum()
    assert not (changed & (lips == 0)).any()
    assert CompositeParams().region == "oval"


def test_style_on_the_lips_from_the_command_line(face_png, tmp_path):
    out = tmp_path / "lips.png"
    assert main(["-q", "convert", str(face_png), str(out), "--param", "region=lips", "--param", "style=5"]) == 0
    changed = np.any(cv2.imread(str(out)) != cv2.imread(str(face_png)), axis=2)
    ys, xs = np.nonzero(changed)
    # only around the mouth (the astronaut's lips sit near x 200–250, y 130–155)
    assert changed.sum() > 100
    assert 185 < xs.min() and xs.max() < 265 and 120 < ys.min() and ys.max() < 170
