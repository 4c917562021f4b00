"""Face tracking, the landmark topology, and compositing back into the frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from henshin.engine.align import ffhq_quad, quad_matrix
from henshin.engine.composite import CompositeParams, composite, face_mask, face_width
from henshin.engine.mediapipe_tracking import MediapipeBackend
from henshin.engine.tracking import FaceTracker, TrackerConfig
from henshin.kernels import landmarks
from henshin.kernels.masks import fill_polygon
from henshin.kernels.outline import features_hull
from henshin.kernels.warp import crop_from_frame, quad_roi
from henshin.samples import SampleSpec, motion, portrait, render_frames
from henshin.types import AlignedFace, FilterSpec


def _frames(spec: SampleSpec):
    """The clip's frames and their affines (where the photo's face is in each)."""
    return render_frames(spec), motion(spec)[0]


@pytest.fixture(scope="module")
def astronaut_face():
    tracker = FaceTracker()
    try:
        faces = tracker(portrait())
    finally:
        tracker.close()
    return faces[0]


def test_topology_matches_mediapipe():
    import mediapipe as mp

    mesh = mp.solutions.face_mesh
    for name, loop in [("FACEMESH_FACE_OVAL", landmarks.FACE_OVAL), ("FACEMESH_LEFT_EYE", landmarks.LEFT_EYE),
                       ("FACEMESH_RIGHT_EYE", landmarks.RIGHT_EYE), ("FACEMESH_LEFT_IRIS", landmarks.LEFT_IRIS),
                       ("FACEMESH_RIGHT_IRIS", landmarks.RIGHT_IRIS)]:
        edges = {tuple(sorted(e)) for e in getattr(mesh, name)}
        ours = {tuple(sorted((loop[i], loop[(i + 1) % len(loop)]))) for i in range(len(loop))}
        assert ours == edges, name
    lips = {tuple(sorted(e)) for e in mesh.FACEMESH_LIPS}
    for loop in (landmarks.LIPS_OUTER, landmarks.LIPS_INNER):
        assert {tuple(sorted((loop[i], loop[(i + 1) % len(loop)]))) for i in range(len(loop))} <= lips


def test_tracker_finds_the_face_with_478_landmarks(astronaut_face):
    assert astronaut_face.landmarks.shape == (478, 3)
    x0, y0, x1, y1 = astronaut_face.box
    # The astronaut's face sits around x 180–270, y 70–180 in the 512² photo.
    assert 160 < x0 < 200 and 250 < x1 < 290 and 50 < y0 < 90 and 160 < y1 < 200


def test_several_faces_keep_their_ids():
    frames, affines = _frames(SampleSpec(width=960, height=540, frames=12, faces=4, face_height=0.9))
    tracker = FaceTracker(TrackerConfig(max_faces=4))
    try:
        seen = [tracker(f) for f in frames]
    finally:
        tracker.close()
    assert all(len(faces) == 4 for faces in seen)
    first = {f.track_id: f.box for f in seen[0]}
    # faces that appear together are numbered left to right, then top to bottom
    order = sorted(first, key=lambda i: (first[i][0] + first[i][2], first[i][1] + first[i][3]))
    assert order == sorted(first) == [0, 1, 2, 3]
    for faces in seen[1:]:
        assert {f.track_id for f in faces} == set(first)
    # each id stays on the same grid cell the whole clip
    for faces in seen:
        for f in faces:
            x0, y0, x1, y1 = f.box
            fx0, fy0, fx1, fy1 = first[f.track_id]
            assert abs((x0 + x1) - (fx0 + fx1)) / 2 < 120 and abs((y0 + y1) - (fy0 + fy1)) / 2 < 60


def test_small_face_in_a_large_frame_is_found():
    # A ~40 px wide face in 1920×1080: too small for the detector on the whole frame.
    spec = SampleSpec(width=1920, height=1080, frames=1, face_height=0.2)
    frames, _ = _frames(spec)
    on = FaceTracker(TrackerConfig(small_faces=True))
    off = FaceTracker(TrackerConfig(small_faces=False))
    try:
        assert len(on(frames[0])) == 1
        assert len(off(frames[0])) == 0
    finally:
        on.close()
        off.close()


def test_max_faces_is_respected():
    frames, _ = _frames(SampleSpec(width=960, height=540, frames=2, faces=4, face_height=0.9))
    tracker = FaceTracker(TrackerConfig(max_faces=2))
    try:
        assert len(tracker(frames[0])) == 2
    finally:
        tracker.close()


def _aligned(face) -> AlignedFace:
    return AlignedFace(face.track_id, face.landmarks, ffhq_quad(face.landmarks))


def _matrix(face: AlignedFace) -> np.ndarray:
    return quad_matrix(face.quad, 256)


def test_background_pixels_are_untouched(astronaut_face):
    image = portrait()
    face = _aligned(astronaut_face)
    crop = crop_from_frame(image, _matrix(face)[None], 256)
    filtered = -crop  # an obvious change everywhere in the crop
    params = CompositeParams()
    out = composite(image, [face], filtered, FilterSpec(), params)
    changed = np.any(out != image, axis=2)
    oval = fill_polygon(astronaut_face.landmarks[list(landmarks.FACE_OVAL)], image.shape[:2]) > 0
    # Beyond the oval only the feather around the features may reach (a brow's tail ends near the temple).
    hull = fill_polygon(features_hull(astronaut_face.landmarks), image.shape[:2]).astype(np.uint8)
    reach = (params.margin + params.feather) * face_width(face) + 1.0
    near_features = cv2.distanceTransform(1 - hull, cv2.DIST_L2, 5) <= reach
    assert changed.any()
    assert not (changed & ~(oval | near_features)).any(), "a pixel outside the face and its features changed"
    assert (changed & ~oval).sum() < 0.02 * oval.sum(), "a frontal face spilled well beyond its oval"
    # the middle of the face is fully replaced
    x, y = astronaut_face.landmarks[landmarks.NOSE_TIP, :2].astype(int)
    assert np.abs(out[y, x].astype(int) - image[y, x].astype(int)).max() > 50


def test_mask_is_feathered_and_eroded(astronaut_face):
    face = _aligned(astronaut_face)
    roi = quad_roi(_matrix(face), 256, (512, 512))
    soft = face_mask(face, roi, CompositeParams(feather=0.1, erode=0.03))
    hard = face_mask(face, roi, CompositeParams(feather=0.0, erode=0.0))
    assert soft.max() == pytest.approx(1.0, abs=1e-3)
    assert ((soft > 0.02) & (soft < 0.98)).sum() > 0.1 * (hard > 0.5).sum()  # a real ramp
    assert (soft > 0).sum() <= (hard > 0).sum() * 1.02  # eroded: it does not spill out


def test_colour_match_pulls_the_face_towards_the_original(astronaut_face):
    image = portrait()
    face = _aligned(astronaut_face)
    crop = crop_from_frame(image, _matrix(face)[None], 256)
    tinted = crop.copy()
    tinted[:, 2] = np.clip(tinted[:, 2] + 0.6, -1, 1)  # far too blue
    roi = quad_roi(_matrix(face), 256, (512, 512))
    alpha = face_mask(face, roi, CompositeParams())
    x0, y0, x1, y1 = roi

    def blue_error(out: np.ndarray) -> float:
        diff = out[y0:y1, x0:x1, 2].astype(float) - image[y0:y1, x0:x1, 2]
        return float((np.abs(diff) * alpha).sum() / alpha.sum())

    plain = composite(image, [face], tinted, FilterSpec(), CompositeParams())
    matched = composite(image, [face], tinted, FilterSpec(), CompositeParams(color_match=1.0))
    assert blue_error(matched) < blue_error(plain) / 3


def test_mask_follows_subpixel_motion(astronaut_face):
    pts = astronaut_face.landmarks[list(landmarks.FACE_OVAL)]
    a = fill_polygon(pts, (512, 512))
    b = fill_polygon(pts + [0.25, 0.0, 0.0], (512, 512))
    assert 0 < np.abs(a - b).sum() < 0.5 * cv2.countNonZero((a > 0).astype(np.uint8))


def test_mask_edge_follows_the_smoothed_landmarks(astronaut_face):
    """The mask comes from the landmarks the crop followed (the smoothed ones), not the tracker's raw ones."""
    raw = _aligned(astronaut_face)
    shifted = AlignedFace(raw.track_id, raw.landmarks + np.float32([6.0, 0.0, 0.0]), raw.quad)
    roi = quad_roi(_matrix(raw), 256, (512, 512))
    a = face_mask(raw, roi, CompositeParams())
    b = face_mask(shifted, roi, CompositeParams())
    cols = np.arange(a.shape[1])
    centre_a = (a.sum(0) * cols).sum() / a.sum()
    centre_b = (b.sum(0) * cols).sum() / b.sum()
    assert centre_b - centre_a == pytest.approx(6.0, abs=0.5)


def test_mask_is_reused_while_the_face_stays_put(astronaut_face):
    from henshin.engine.composite import Compositor

    image = portrait()
    face = _aligned(astronaut_face)
    crop = crop_from_frame(image, _matrix(face)[None], 256)[0]
    compositor = Compositor()
    calls = []
    real = compositor._mask.__func__

    def counting(self, *args):
        out = real(self, *args)
        calls.append(id(out))
        return out

    compositor._mask = counting.__get__(compositor)
    for _ in range(3):
        compositor.paste(image.copy(), face, -crop, _matrix(face), FilterSpec(), CompositeParams())
    moved = AlignedFace(face.track_id, face.landmarks + np.float32([1.0, 0.0, 0.0]), face.quad)
    compositor.paste(image.copy(), moved, -crop, _matrix(face), FilterSpec(), CompositeParams())
    assert calls[0] == calls[1] == calls[2]  # the same mask object: built once
    assert calls[3] != calls[0]  # moved by a pixel: built again


def test_live_tracking_spreads_the_tile_sweep_over_frames():
    # Offline, a scheduled look for new faces runs the detector on the whole frame and every
    # small-face tile in one frame; live runs the whole frame and one tile, so no frame spikes.
    frames, _ = _frames(SampleSpec(width=1280, height=720, frames=90, face_height=0.5))
    frames = frames[:9]
    runs: dict[bool, list[int]] = {}
    for sweep in (True, False):
        tracker = FaceTracker(TrackerConfig(max_faces=2, detect_every=4, sweep_tiles=sweep))
        calls: list[int] = []
        real = tracker.backend._detect_scaled

        def counted(*args, _real=real, _calls=calls):
            _calls[-1] += 1
            return _real(*args)

        tracker.backend._detect_scaled = counted
        try:
            for frame in frames:
                calls.append(0)
                assert len(tracker(frame)) == 1
        finally:
            tracker.close()
        runs[sweep] = calls
    assert runs[True][0] == runs[False][0] > 2  # the first frame searches everywhere either way
    assert runs[True][4] == runs[True][0] and runs[True][8] == runs[True][0]
    assert runs[False][4] == 2 and runs[False][8] == 2
    assert max(runs[False][1:]) <= 2


def _track_counting_detections(tracker, frames):
    """Track ``frames`` (closing the tracker after): the faces found in each frame, and each detector
    run as (frame number, thread name), the helper thread's included. The search behind is waited
    for after each frame, so its runs count against the frame that scheduled them or the next."""
    import threading

    calls: list[tuple[int, str]] = []
    counts: list[int] = []
    real = MediapipeBackend._detect_scaled

    def counted(self, *args):
        calls.append((len(counts), threading.current_thread().name))
        return real(self, *args)

    MediapipeBackend._detect_scaled = counted  # the helper thread's backend too
    try:
        for image in frames:
            counts.append(len(tracker(image)))
            if tracker._behind is not None:
                tracker._behind.result()  # the helper's search is done before the next frame comes
    finally:
        MediapipeBackend._detect_scaled = real
        tracker.close()
    return counts, calls


def test_live_tracking_searches_behind_and_a_new_face_joins():
    # Live, the scheduled look for new faces runs in a helper thread: the frame that schedules it
    # calls no detector itself, and a face that appears meanwhile is still found and tracked.
    import threading

    frames, affines = _frames(SampleSpec(width=960, height=540, frames=24, faces=2, face_height=0.6))
    hidden = frames[:3]
    for image in hidden:  # the second face covered in the first frames
        x = int(affines[0, 1, 0, 2])
        image[:, max(x, image.shape[1] // 2):] = 40
    tracker = FaceTracker(TrackerConfig(max_faces=2, detect_every=4, sweep_tiles=False, search_behind=True))
    counts, calls = _track_counting_detections(tracker, frames)
    assert counts[0] == 1 and counts[-1] == 2  # the second face, uncovered at frame 3, joined
    here = threading.current_thread().name
    due = [i for i in range(1, len(frames)) if i % 4 == 0]
    assert not [c for c in calls if c[0] in due and c[1] == here]  # due frames ran no detector here
    assert any(c[1].startswith("henshin-search") for c in calls)
    assert counts.index(2) <= 9  # found by the search scheduled at frame 4 or 8


def test_live_tracking_looks_at_the_whole_frame_first_and_at_the_small_face_tiles_behind():
    # A sweep of every tile on the first frame held it 100 ms or more at 720p: live detects on the
    # whole frame there, and the tiles go to the helper thread (small faces join a few frames later).
    import threading

    frames, _ = _frames(SampleSpec(width=960, height=540, frames=6, faces=2, face_height=0.6))
    tracker = FaceTracker(TrackerConfig(max_faces=2, sweep_tiles=False, search_behind=True))
    counts, calls = _track_counting_detections(tracker, frames)
    here = threading.current_thread().name
    assert [c for c in calls if c[0] == 0 and c[1] == here] == [(0, here)]  # the whole frame only
    assert len([c for c in calls if c[1].startswith("henshin-search")]) > 1  # the tiles, behind
    assert counts[0] == 2 and counts[-1] == 2


def test_a_search_behind_that_ends_frames_later_starts_no_mesh_on_faces_already_tracked():
    # Live, the search behind reports faces of a frame some frames back. A face tracked on that frame
    # has moved since, so against where it is now it looked new, and a mesh was started on it for
    # nothing (two faces, 30 ms of a live frame). Here the search of the first frame is taken at the
    # fifth, the faces 48 px (most of a face's width) further on.
    image, _ = _frames(SampleSpec(width=960, height=540, frames=1, faces=2, face_height=0.6))
    tracker = FaceTracker(TrackerConfig(max_faces=4, sweep_tiles=False, search_behind=True))
    starts: list[tuple[int, int]] = []
    real = tracker.backend.start

    def counted(frames, seeds):
        starts.append((frame, len(seeds)))
        return real(frames, seeds)

    tracker.backend.start = counted
    try:
        frame = 0
        assert [f.track_id for f in tracker(image[0])] == [0, 1]
        search, tracker._behind = tracker._behind, None  # the search of frame 0, held back
        search.result()
        for frame in range(1, 5):
            if frame == 4:
                tracker._behind = search
            moved = tracker(np.roll(image[0], 12 * frame, axis=1))
            assert [f.track_id for f in moved] == [0, 1]
    finally:
        tracker.close()
    assert starts == [(0, 2)]  # the two faces' meshes, started once
    assert search.result()  # the held-back search did find the faces
