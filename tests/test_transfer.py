"""The transfer filter: the mesh flow, a reference onto itself, a coloured patch carried onto the lips only, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_offline_frames

from henshin.cli.main import main
from henshin.errors import BadInputError, InputNotFoundError, OptionError
from henshin.filters.base import parse_params
from henshin.filters.reference import face_landmarks
from henshin.filters.transfer.filter import TransferFilter, TransferParams
from henshin.kernels.mesh import border_triangles, grid_step, mesh_map, triangulate
from henshin.kernels.regions import REGIONS, region_box, region_mask, shape_polygon
from henshin.samples import SampleSpec, portrait, render_frames
from henshin.types import FaceContext

BLUE = (40, 60, 230)


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, np.ndarray]:
    """The sample face at twice its size (lips a few pixels thick at 512 px), and its landmarks."""
    image = cv2.resize(portrait(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    return image, face_landmarks(image)


def transfer(reference: Path, **params: str) -> TransferFilter:
    return TransferFilter(parse_params(TransferParams, {"reference": str(reference), **params}))


def _save(path: Path, image: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def test_the_mesh_map_of_an_affine_pair_is_that_affine_everywhere(face) -> None:
    _, points = face
    affine = np.array([[1.1, 0.1, 5.0], [-0.05, 0.95, -3.0]])
    moved = points[:, :2] @ affine[:, :2].T + affine[:, 2]
    triangles = triangulate(points)
    assert len(triangles) > 800 and set(np.unique(triangles)) == set(range(len(points)))
    for roi in (
        (150, 150, 350, 400),
        (200, 300, 300, 360),
        (0, 0, 40, 40),
    ):  # large, small, outside the mesh
        x0, y0, x1, y1 = roi
        gx, gy = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
        expected = np.stack([gx, gy, np.ones_like(gx)], -1) @ affine.T
        np.testing.assert_allclose(mesh_map(points, moved, triangles, roi), expected, atol=0.05)


def test_the_mesh_map_inside_each_triangle_is_that_triangles_affine(face) -> None:
    _, points = face
    xy = points[:, :2].astype(np.float64)
    # a smooth bend (no triangle folds over): each triangle gets its own affine
    bent = xy + np.stack([6 * np.sin(xy[:, 1] / 40), 4 * np.cos(xy[:, 0] / 55)], 1)
    triangles = triangulate(points)
    roi = (300, 300, 700, 760)
    x0, y0, x1, y1 = roi
    step = grid_step(roi)
    flow = mesh_map(points, bent, triangles, roi)
    checked = 0
    for tri in triangles:
        p, q = xy[tri], bent[tri]
        centre = p.mean(0)  # the grid point nearest the triangle's centroid, if well inside it
        g = np.rint((centre - (x0, y0)) / step).astype(int)
        gx, gy = (x0, y0) + g * step
        if not (x0 <= gx < x1 and y0 <= gy < y1):
            continue
        weights = np.linalg.solve(np.vstack([p.T, np.ones(3)]), [gx, gy, 1.0])
        if weights.min() < 0.05:
            continue
        np.testing.assert_allclose(flow[gy - y0, gx - x0], weights @ q, atol=1e-3)
        checked += 1
    assert checked > 60


def test_the_mesh_map_stays_on_the_reference_beside_the_mesh_border() -> None:
    """A border triangle of the Delaunay mesh can be a sliver: extrapolating its affine even half a
    grid step past the border flung those pixels thousands of pixels off the reference (the beard
    of the 720p sample face picked up stray pixels at the jaw)."""
    from henshin.engine.tracking import FaceTracker

    (image,) = render_frames(SampleSpec(width=1280, height=720, frames=1))
    tracker = FaceTracker()
    try:
        (found,) = tracker(image)
    finally:
        tracker.close()
    reference = face_landmarks(portrait())
    triangles = triangulate(reference)
    assert border_triangles(triangles).sum() > 20
    lo, hi = reference[:, :2].min(0), reference[:, :2].max(0)
    pad = 0.25 * (hi - lo)
    for region in REGIONS:
        roi = region_box(found.landmarks, region, 1.5, image.shape[:2])
        flow = mesh_map(found.landmarks, reference, triangles, roi)
        assert ((flow >= lo - pad) & (flow <= hi + pad)).all(), region


def test_a_reference_onto_itself_moved_is_nearly_the_identity_inside_the_region(
    face, tmp_path: Path
) -> None:
    image, points = face
    face_png = _save(tmp_path / "face.png", image)
    dx, dy = 17, -9  # the same face elsewhere in the frame: the flow must follow it
    moved = np.roll(image, (dy, dx), axis=(0, 1))
    shifted = points + np.array([dx, dy, 0], np.float32)
    for region in REGIONS:
        filt = transfer(face_png, region=region)
        (patch,) = filt.edit(moved, [FaceContext(0, landmarks=shifted)])
        x0, y0, x1, y1 = patch.roi
        inside = patch.mask > 0.01
        diff = np.abs(patch.pixels.astype(int) - moved[y0:y1, x0:x1].astype(int))[inside]
        assert inside.sum() > 20 and diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (
            region,
            diff.mean(),
        )


def test_a_coloured_patch_on_the_reference_lips_lands_on_the_target_lips_and_nowhere_else(
    face, tmp_path: Path
) -> None:
    image, points = face
    reference = image.copy()
    cv2.fillPoly(
        reference,
        [np.rint(shape_polygon(points, "lips_outer") * 16).astype(np.int32)],
        BLUE,
        cv2.LINE_8,
        4,
    )
    ref_path = _save(tmp_path / "blue-lips.png", reference)
    m = cv2.getRotationMatrix2D((512, 512), 8, 0.9)
    m[:, 2] += (40, -20)
    target = cv2.warpAffine(image, m, (1024, 1024), borderMode=cv2.BORDER_REFLECT)
    frames = [target] * 4
    out = run_offline_frames(frames, "transfer", reference=str(ref_path), region="lips")[2]
    found = face_landmarks(target)
    eye_dist = float(np.linalg.norm(found[468, :2] - found[473, :2]))
    grown = np.zeros(
        target.shape[:2], np.uint8
    )  # the lips grown by the feather and tracking's wobble
    cv2.fillPoly(grown, [shape_polygon(found, "lips_outer", 0.15 * eye_dist).astype(np.int32)], 1)
    changed = (out != target).any(-1)
    assert changed.sum() > 200 and not changed[grown == 0].any()  # exact bytes outside the lips
    roi = region_box(found, "lips", 0.0, target.shape[:2])
    core = region_mask(found, "lips", roi, 1.0) > 0.9
    x0, y0, x1, y1 = roi
    before, after = target[y0:y1, x0:x1][core].astype(int), out[y0:y1, x0:x1][core].astype(int)
    blue_before, blue_after = ((px[:, 2] - px[:, 0] > 80).mean() for px in (before, after))
    print(
        f"lips' mean colour before {before.mean(0).round()}, after {after.mean(0).round()}; blue pixels "
        f"{blue_before:.0%} → {blue_after:.0%}"
    )
    assert blue_before == 0 and blue_after > 0.75 and after.mean(0)[2] - after.mean(0)[0] > 100


def test_strength_scales_the_blend_and_zero_is_no_patch(face, face_png: Path) -> None:
    image, points = face
    filt = transfer(face_png, region="lips", strength="0.5")
    (patch,) = filt.edit(image, [FaceContext(0, landmarks=points)])
    assert 0.45 < patch.mask.max() <= 0.5
    filt.set_params(strength="0")
    assert filt.edit(image, [FaceContext(0, landmarks=points)]) == []


def test_a_reference_without_a_face_or_missing_is_one_sentence(
    tmp_path: Path, clip, capsys
) -> None:
    blank = _save(tmp_path / "blank.png", np.full((200, 200, 3), 120, np.uint8))
    with pytest.raises(BadInputError, match="no face was found in the reference picture"):
        transfer(blank)
    with pytest.raises(InputNotFoundError, match="reference picture"):
        transfer(tmp_path / "nope.png")
    with pytest.raises(OptionError, match="needs --param reference=PICTURE"):
        parse_params(TransferParams, {})
    with pytest.raises(OptionError, match="region"):
        parse_params(TransferParams, {"reference": str(blank), "region": "ears"})
    path, _ = clip
    assert (
        main(
            [
                "-q",
                "convert",
                str(path),
                str(tmp_path / "o.mp4"),
                "--filter",
                "transfer",
                "--param",
                f"reference={blank}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no face was found in the reference picture" in err
    assert not (tmp_path / "o.mp4").exists()


def test_transfer_runs_in_a_chain_per_person_and_live(face_png: Path, tmp_path: Path, clip) -> None:
    path, _ = clip
    out = tmp_path / "chain.mp4"
    assert (
        main(
            [
                "-q",
                "convert",
                str(path),
                str(out),
                "--filter",
                "warp+transfer",
                "--param",
                "warp.preset=big_eyes",
                "--param",
                f"transfer.reference={face_png}",
                "--param",
                "transfer.region=brows",
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    assert (
        main(
            [
                "-q",
                "live",
                "--source",
                str(path),
                "--sink",
                "null",
                "--max-frames",
                "4",
                "--filter",
                "tint",
                "--face",
                "0=transfer",
                "--param",
                f"transfer.reference={face_png}",
                "--param",
                "transfer.region=beard",
            ]
        )
        == 0
    )
