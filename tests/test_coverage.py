"""Every visible part of a face is covered by its mask: turned faces, an oval through an eye, sample clips."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from henshin import samples
from henshin.engine.align import ffhq_quad
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.composite import CompositeParams, face_mask, face_width
from henshin.engine.shots import CutDetector
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.stages import FaceStages, Work
from henshin.engine.tracking import FaceTracker, TrackerConfig
from henshin.filters.base import Filter, register
from henshin.kernels import landmarks as lm
from henshin.kernels.masks import fill_polygon
from henshin.kernels.outline import yaw
from henshin.samples import (
    SampleSpec,
    ShotsSpec,
    motion,
    portrait,
    render_frames,
    shots_frames,
    shots_motion,
)
from henshin.types import AlignedFace, FaceContext, FilterSpec, Frame
from tests.conftest import run_offline_frames

ROI = (0, 0, 512, 512)


@pytest.fixture(scope="module")
def mesh() -> np.ndarray:
    """The astronaut's face mesh from a real picture: (478, 3), z from mediapipe."""
    tracker = FaceTracker()
    try:
        return tracker(portrait())[0].landmarks.astype(np.float64)
    finally:
        tracker.close()


def turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """The mesh turned about the vertical axis through its oval's centre and projected straight on.

    Positive degrees turn the subject's right side (the image's left) away from the camera.
    """
    t = np.deg2rad(degrees)
    centre = points[list(lm.FACE_OVAL)].mean(0)
    p = points - centre
    x = p[:, 0] * np.cos(t) + p[:, 2] * np.sin(t)
    z = -p[:, 0] * np.sin(t) + p[:, 2] * np.cos(t)
    return (np.stack([x, p[:, 1], z], 1) + centre).astype(np.float32)


def aligned(points: np.ndarray) -> AlignedFace:
    return AlignedFace(0, points, ffhq_quad(points))


def at(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The mask's values at frame points (bilinear)."""
    pts = np.asarray(xy, np.float32).reshape(-1, 1, 2)
    return cv2.remap(mask, pts[..., 0], pts[..., 1], cv2.INTER_LINEAR)[:, 0]


def far_cheek(points: np.ndarray, far_eye: tuple[int, ...], width: float) -> np.ndarray:
    """Indices of the mesh points of the far cheek, chosen on the frontal face.

    Beyond the far eye's centre, between the eyes' and the mouth's height, and
    at least 0.2 face widths inside the oval: points any mask must cover frontally.
    """
    eye = points[list(far_eye), :2]
    centre = points[:, :2].mean(0)
    outward = 1.0 if eye[:, 0].mean() > centre[0] else -1.0
    corner = (eye[:, 0] * outward).mean()
    top, bottom = eye[:, 1].mean(), points[[lm.MOUTH_LEFT, lm.MOUTH_RIGHT], 1].mean()
    oval = points[list(lm.FACE_OVAL), :2].astype(np.float32).reshape(-1, 1, 2)
    depth = np.array(
        [cv2.pointPolygonTest(oval, (float(x), float(y)), True) for x, y in points[:, :2]]
    )
    chosen = (
        (points[:, 0] * outward > corner)
        & (points[:, 1] > top)
        & (points[:, 1] < bottom)
        & (depth > 0.2 * width)
    )
    return np.nonzero(chosen)[0]


@pytest.mark.parametrize("degrees", [0, 10, 20, 30, 40, 50, -30, -50])
def test_a_turned_face_has_both_eyes_and_the_far_cheek_covered(mesh, degrees):
    points = turned(mesh, degrees)
    face = aligned(points)
    mask = face_mask(face, ROI, CompositeParams())
    far_eye = lm.RIGHT_EYE if degrees >= 0 else lm.LEFT_EYE
    cheek = far_cheek(mesh, far_eye, face_width(aligned(mesh)))
    assert len(cheek) >= 10
    eyes = points[list(lm.LEFT_EYE + lm.RIGHT_EYE + lm.LEFT_IRIS + lm.RIGHT_IRIS), :2]
    assert at(mask, eyes).min() > 0.99, "an eye is not fully covered"
    assert at(mask, points[cheek, :2]).min() > 0.95, "the far cheek is not fully covered"
    if abs(degrees) >= 20:
        # the mesh's own far silhouette: its farthest point along the face's axis
        side = -1.0 if degrees > 0 else 1.0
        silhouette = points[np.argmax(points[:, 0] * side), :2]
        assert at(mask, silhouette[None])[0] > 0.5, "the mask stops short of the far silhouette"


def test_the_yaw_is_read_from_the_mesh_depth(mesh):
    for degrees in (-40, -20, 0, 20, 40):
        assert np.rad2deg(yaw(turned(mesh, degrees))) == pytest.approx(-degrees, abs=5)


def test_an_eye_the_oval_runs_through_is_covered_with_a_margin(mesh):
    """A drawn character's large eye: the mesh's far contour crosses it (seen on real footage)."""
    points = turned(mesh, 35).copy()
    eye = points[list(lm.RIGHT_EYE), :2]
    through = eye[:, 0].mean()  # pull the far half of the oval in to the eye's centre line
    ring = np.asarray(lm.FACE_OVAL)
    points[ring, 0] = np.maximum(points[ring, 0], through)
    params = CompositeParams()
    mask = face_mask(aligned(points), ROI, params)
    # the eye's outline, and a ring around it at 0.9 of the margin
    margin = 0.9 * params.margin * face_width(aligned(points))
    centre = eye.mean(0)
    outward = eye - centre
    ring_pts = eye + outward / np.linalg.norm(outward, axis=1, keepdims=True) * margin
    assert at(mask, eye).min() > 0.99
    assert at(mask, ring_pts).min() > 0.99


# -- through the engine: every frame of the sample clips ----------------------------------------


@dataclass(frozen=True)
class _NoParams:
    pass


@register
class NotSkin(Filter):
    """A 'style' whose colours are nowhere near skin: deep blue, the crop's light kept as a pattern."""

    name = "test-not-skin"
    Params = _NoParams

    @property
    def spec(self) -> FilterSpec:
        return FilterSpec(size=128, value_range=(0.0, 1.0))

    def process(self, batch: np.ndarray, faces: Sequence[FaceContext]) -> np.ndarray:
        light = batch.mean(1, keepdims=True)
        return np.concatenate([0.05 + 0.1 * light, 0.15 + 0.2 * light, 0.9 + 0.1 * light], 1)


def _truth(mesh: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The photo's mesh where the clip put it: (478, 2) frame pixels."""
    return mesh[:, :2] @ affine[:, :2].T + affine[:, 2]


def changed_halves(
    out: np.ndarray, original: np.ndarray, points: np.ndarray
) -> tuple[float, float]:
    """Changed fraction of each half of the inner face (the hull of eyes, brows, nose and lips),
    split by the line through the eyes' midpoint across the eye line."""
    features = (
        lm.LEFT_EYE + lm.RIGHT_EYE + lm.LEFT_BROW + lm.RIGHT_BROW + lm.LIPS_OUTER + (1, 4, 98, 327)
    )
    hull = cv2.convexHull(points[list(features)].astype(np.float32))[:, 0]
    inner = fill_polygon(hull, out.shape[:2]) > 0
    left, right = lm.eye_centers(points)
    ys, xs = np.mgrid[0 : out.shape[0], 0 : out.shape[1]]
    side = (xs - (left[0] + right[0]) / 2) * (left[0] - right[0]) + (
        ys - (left[1] + right[1]) / 2
    ) * (left[1] - right[1])
    changed = np.abs(out.astype(np.int16) - original.astype(np.int16)).max(-1) > 30
    return float(changed[inner & (side > 0)].mean()), float(changed[inner & (side < 0)].mean())


ZOOM_SHOTS = ShotsSpec(width=480, height=360, shots=(16, 10, 10, 14), fade=4)


def _clips() -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    spec = SampleSpec(width=480, height=360, frames=24, fps=24, face_height=1.3)
    affines, _ = motion(spec)
    sample = render_frames(spec)
    truth = shots_motion(ZOOM_SHOTS)
    lit = truth.gains > 0  # the black first frame has no face to see
    shots = [f for f, keep in zip(shots_frames(ZOOM_SHOTS, truth), lit, strict=True) if keep]
    return {"sample": (sample, affines[:, 0]), "shots": (shots, truth.affines[lit])}


@pytest.mark.parametrize("clip", ["sample", "shots"])
def test_both_halves_of_the_inner_face_change_in_every_frame(mesh, clip):
    frames, affines = _clips()[clip]
    outputs = run_offline_frames(frames, "test-not-skin")
    assert len(outputs) == len(frames)
    for i, (out, original, affine) in enumerate(zip(outputs, frames, affines, strict=True)):
        halves = changed_halves(out, original, _truth(mesh, affine))
        assert min(halves) >= 0.8, f"frame {i}: changed fraction of the two halves {halves}"


@pytest.mark.parametrize("tracker", ["mediapipe", "torch"])
def test_a_zoom_cut_ends_the_track_and_no_frame_has_an_offset_face(mesh, tracker):
    if tracker == "torch":
        pytest.importorskip("torch")
    truth = shots_motion(ZOOM_SHOTS)
    frames = shots_frames(ZOOM_SHOTS, truth)
    stages = FaceStages(FilterGraph(ChainRequest("tint")), CentredSmoother(4), TrackerConfig(kind=tracker))
    ids = []
    try:
        for i, image in enumerate(frames):
            work = stages.track(Work(Frame(image, i)))
            if truth.gains[i] == 0:
                continue
            assert len(work.faces) == 1, f"frame {i}"
            points = _truth(mesh, truth.affines[i])
            eyes = np.linalg.norm(points[lm.LEFT_IRIS_CENTER] - points[lm.RIGHT_IRIS_CENTER])
            error = np.linalg.norm(work.faces[0].landmarks[:, :2] - points, axis=1).mean()
            assert error < 0.05 * eyes, f"frame {i}: landmarks off by {error:.1f} px"
            ids.append((int(truth.shots[i]), work.faces[0].track_id))
    finally:
        stages.close()
        stages.graph.close()
    detector = CutDetector()
    seen = [i for i, image in enumerate(frames) if detector(image)]
    assert seen == ZOOM_SHOTS.cuts[:-1], (
        "the colour histograms see the zoom cut: the clip tests nothing new"
    )
    by_shot = {k: {t for s, t in ids if s == k} for k in range(4)}
    assert all(len(v) == 1 for v in by_shot.values())  # one track through each shot
    assert by_shot[3] != by_shot[2], "the zoom cut did not end the track"


@pytest.mark.parametrize("factor, anchor", [(0.85, (0.2, 0.6)), (1.15, (0.5, 0.5)), (1.15, (0.2, 0.6))])
def test_a_punch_in_or_out_under_the_jump_size_leaves_no_frame_offset(mesh, monkeypatch, factor, anchor):
    """A zoom cut smaller than a jump (1.15x in, 0.85x out, the face moved by a third of its size):
    the tracking mesh fitted its old position to the new picture and took 1-3 frames to find the
    face (0.85 of the eye distance off); a second look at a step that breaks from the face's motion
    finds it on the cut's frame."""
    monkeypatch.setitem(samples.ZOOM_CUTS, 3, (factor, anchor))
    truth = shots_motion(ZOOM_SHOTS)
    tracker = FaceTracker()
    try:
        for i, image in enumerate(shots_frames(ZOOM_SHOTS, truth)):
            faces = tracker(image)
            if truth.gains[i] == 0:
                continue
            assert len(faces) == 1, f"frame {i}"
            points = _truth(mesh, truth.affines[i])
            eyes = np.linalg.norm(points[lm.LEFT_IRIS_CENTER] - points[lm.RIGHT_IRIS_CENTER])
            error = np.linalg.norm(faces[0].landmarks[:, :2] - points, axis=1).mean()
            assert error < 0.05 * eyes, f"frame {i}: landmarks off by {error / eyes:.2f} of the eye distance"
    finally:
        tracker.close()


def test_smooth_motion_even_fast_gets_no_second_look(monkeypatch):
    """Two faces swaying through the sample's whole motion in one second (a step of up to a fifth of
    their size a frame): the second look is for steps that break from a face's motion, so no mesh
    starts after the first frame's."""
    frames = render_frames(SampleSpec(width=960, height=540, frames=24, fps=24, faces=2))
    tracker = FaceTracker(TrackerConfig(max_faces=2))
    starts, looks = [], []
    start, look = tracker.backend.start, tracker.backend.look
    monkeypatch.setattr(tracker.backend, "start", lambda f, seeds: starts.append(len(seeds)) or start(f, seeds))
    monkeypatch.setattr(tracker.backend, "look", lambda f, seeds: looks.append(len(seeds)) or look(f, seeds))
    try:
        ids = [[face.track_id for face in tracker(image)] for image in frames]
    finally:
        tracker.close()
    assert ids == [[0, 1]] * len(frames)
    assert sum(starts) == 2 and sum(looks) == 0, f"meshes started: {starts}, second looks: {looks}"
