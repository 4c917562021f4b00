"""Alignment: FFHQ squares from landmarks, their smoothing, and crop round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from henshin.engine.align import ffhq_quad, quad_matrix
from henshin.engine.smoothing import CentredSmoother, OneEuro
from henshin.engine.sources import open_source
from henshin.engine.tracking import FaceTracker
from henshin.kernels.warp import crop_from_frame, frame_from_crop, quad_roi
from henshin.samples import portrait
from tests.conftest import CLIP


@pytest.fixture(scope="module")
def reference_quad() -> np.ndarray:
    tracker = FaceTracker()
    try:
        faces = tracker(portrait())
    finally:
        tracker.close()
    assert len(faces) == 1
    return ffhq_quad(faces[0].landmarks)


def _moved(quad: np.ndarray, affine: np.ndarray) -> np.ndarray:
    centre = affine[:, :2] @ quad[:2] + affine[:, 2]
    axis = affine[:, :2] @ quad[2:]
    return np.concatenate([centre, axis])


def test_alignment_follows_the_known_motion(clip, reference_quad):
    path, affines = clip
    source = open_source(path)
    tracker = FaceTracker()
    smoother = CentredSmoother(radius=4)
    got: dict[int, np.ndarray] = {}
    try:
        for frame in source:
            faces = tracker(frame.image)
            quads = {f.track_id: ffhq_quad(f.landmarks) for f in faces}
            for index, smoothed in smoother.push(frame.index, quads):
                got[index] = smoothed[0]
        for index, smoothed in smoother.flush():
            got[index] = smoothed[0]
    finally:
        tracker.close()
        source.close()
    assert len(got) >= 0.95 * CLIP.frames
    centre_err, angle_err, scale_err = [], [], []
    for index, quad in got.items():
        want = _moved(reference_quad, affines[index, 0])
        half = math.hypot(*want[2:])
        centre_err.append(math.hypot(*(quad[:2] - want[:2])) / half)
        angle_err.append(abs(math.degrees(math.atan2(quad[3], quad[2]) - math.atan2(want[3], want[2]))))
        scale_err.append(abs(math.hypot(*quad[2:]) / half - 1))
    # Errors relative to the square's half side (~85 px here): about a pixel.
    assert np.median(centre_err) < 0.01 and max(centre_err) < 0.03
    assert np.median(angle_err) < 1.0 and max(angle_err) < 3
    assert np.median(scale_err) < 0.01 and max(scale_err) < 0.03


def test_ffhq_square_is_upright_for_an_upright_face(reference_quad):
    angle = math.degrees(math.atan2(reference_quad[3], reference_quad[2]))
    assert abs(angle) < 5
    # FFHQ's framing (its align script: half side twice the eye distance, centre a tenth of the way from the
    # eyes to the mouth): in the 1024-px crop the irises land at x = 384 and 640, a little above the middle.
    tracker = FaceTracker()
    try:
        (face,) = tracker(portrait())
    finally:
        tracker.close()
    matrix = quad_matrix(reference_quad, 1024)
    (lx, ly), (rx, ry) = (matrix @ np.r_[face.landmarks[i, :2], 1.0] for i in (468, 473))  # iris centres
    assert abs(lx - 384) < 10 and abs(rx - 640) < 10  # measured 384.6 and 639.3
    assert 450 < ly < 512 and 450 < ry < 512  # measured 485 and 488


def test_quad_matrix_maps_the_square_onto_the_crop():
    quad = np.array([200.0, 150.0, 60.0, 20.0])
    m = quad_matrix(quad, 256)
    cx, cy, ax, ay = quad
    half = math.hypot(ax, ay)
    vx, vy = -ay / half * half, ax / half * half
    corners = {(0, 0): (cx - ax - vx, cy - ay - vy), (256, 0): (cx + ax - vx, cy + ay - vy),
               (0, 256): (cx - ax + vx, cy - ay + vy), (128, 128): (cx, cy)}
    for want, point in corners.items():
        np.testing.assert_allclose(m @ [*point, 1.0], want, atol=1e-9)


def test_crop_and_paste_back_round_trips():
    rng = np.random.default_rng(0)
    image = (rng.random((240, 320, 3)) * 40 + 100).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::8, ::8], 8, 0), 8, 1)[:240, :320])
    m = quad_matrix(np.array([160.0, 120.0, 50.0, 10.0]), 256)
    crop = crop_from_frame(image, m[None], 256)[0]
    roi = quad_roi(m, 256, image.shape[:2])
    back = frame_from_crop((crop.transpose(1, 2, 0) + 1) * 127.5, m, roi)
    x0, y0, x1, y1 = roi
    inner = (slice(y0 + 20, y1 - 20), slice(x0 + 20, x1 - 20))
    err = np.abs(back[20:-20, 20:-20] - image[inner].astype(np.float32))
    assert err.mean() < 3


def test_centred_smoothing_has_no_lag_on_steady_motion():
    smoother = CentredSmoother(radius=4)
    out = {}
    for i in range(20):
        for index, quads in smoother.push(i, {7: np.array([i * 5.0, 2.0, 30.0, 0.0])}):
            out[index] = quads[7]
    for index, quads in smoother.flush():
        out[index] = quads[7]
    assert sorted(out) == list(range(20))
    for i, quad in out.items():
        np.testing.assert_allclose(quad[0], i * 5.0, atol=1e-9)


def test_centred_smoothing_removes_jitter():
    rng = np.random.default_rng(1)
    smoother = CentredSmoother(radius=4)
    noisy = [np.array([100.0, 100.0, 40.0, 0.0]) + rng.normal(0, 2, 4) for _ in range(60)]
    out = [q[0] for i, n in enumerate(noisy) for _, q in smoother.push(i, {0: n})]
    out += [q[0] for _, q in smoother.flush()]
    raw_jitter = np.abs(np.diff(np.array(noisy)[:, 0])).mean()
    smooth_jitter = np.abs(np.diff(np.array(out)[:, 0])).mean()
    assert smooth_jitter < raw_jitter / 3  # measured: about a fifth


def test_one_euro_steadies_a_still_face_and_follows_a_move():
    rng = np.random.default_rng(2)
    f = OneEuro(min_cutoff=1.0, beta=0.02)
    still = [f(np.array([100.0]) + rng.normal(0, 1.5, 1), t / 30) for t in range(60)]
    assert np.std(np.array(still[20:])) < 0.8
    moved = [f(np.array([300.0]), (60 + t) / 30) for t in range(30)]
    assert abs(moved[-1][0] - 300.0) < 2  # caught up within a second
