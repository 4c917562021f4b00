"""Steady video: faces from the first frame, shot changes, flow-guided blending, the warping error."""

from __future__ import annotations

import json
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from henshin.cli.main import main
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.live import process_frame
from henshin.engine.metrics import warping_errors
from henshin.engine.offline import OfflineConfig, run_offline
from henshin.engine.shots import CutConfig, CutDetector
from henshin.engine.smoothing import CentredSmoother, OneEuroSmoother
from henshin.engine.stages import FaceStages, Work
from henshin.errors import BadInputError, InputNotFoundError, OptionError
from henshin.filters.base import Filter, register
from henshin.kernels.masks import fill_polygon
from henshin.samples import (
    SampleSpec,
    ShotsSpec,
    motion,
    portrait,
    render_frames,
    shots_frames,
    shots_motion,
    write_shots_sample,
)
from henshin.types import FilterSpec, Frame
from tests.conftest import FramesSource, KeepSink

SHOTS = ShotsSpec(width=480, height=360, shots=(20, 14, 14), fade=6)
FACE_HALVES = ((185, 225), (225, 265))  # the photo's inner face (x), split at the nose; y 90–200


@pytest.fixture(scope="module")
def shots():
    """The shots clip: a fade from black, cuts at frames 20 and 34; frames and what is known of them."""
    truth = shots_motion(SHOTS)
    return shots_frames(SHOTS, truth), truth


@pytest.fixture(scope="module")
def tracked(shots):
    """Per frame of the shots clip through the track stage: (cut, track ids)."""
    frames, _ = shots
    stages = FaceStages(FilterGraph(ChainRequest("tint")), CentredSmoother(4))
    try:
        out = []
        for i, image in enumerate(frames):
            work = stages.track(Work(Frame(image, i)))
            out.append((work.cut, [f.track_id for f in work.faces]))
        return out
    finally:
        stages.close()
        stages.graph.close()


def run(frames, chain, smooth=4, cut_threshold=None, **params):
    """Frames through the offline scheduler; (output images, stats)."""
    graph = FilterGraph(ChainRequest(chain, {}, params))
    cuts = CutConfig() if cut_threshold is None else CutConfig(threshold=cut_threshold)
    stages = FaceStages(graph, CentredSmoother(smooth), cuts=cuts)
    sink = KeepSink()
    try:
        stats = run_offline(FramesSource(frames), stages, sink, OfflineConfig(progress=False))
    finally:
        stages.close()
        graph.close()
    return sink.images, stats


def changed_halves(image, original, affine):
    """Fraction of changed pixels in the left and right half of the face (known from the clip's affine)."""
    changed = np.abs(image.astype(np.int16) - original.astype(np.int16)).max(-1) > 12
    fractions = []
    for x0, x1 in FACE_HALVES:
        box = np.array([[x0, 90], [x1, 90], [x1, 200], [x0, 200]], np.float64) @ affine[:, :2].T + affine[:, 2]
        area = fill_polygon(box, image.shape[:2]) > 0.5
        fractions.append(float(changed[area].mean()))
    return fractions


# -- faces from the first frame, tracks and shots ---------------------------------------------


def test_faces_are_found_in_every_frame_from_the_first_non_black_one(shots, tracked):
    _, truth = shots
    for i, (_, ids) in enumerate(tracked):
        assert len(ids) == (1 if truth.gains[i] > 0 else 0), f"frame {i} (light {truth.gains[i]:.2f})"


def test_cuts_are_found_where_the_shots_change(shots, tracked):
    assert [i for i, (cut, _) in enumerate(tracked) if cut] == SHOTS.cuts


def test_track_ids_change_at_cuts_and_only_there(shots, tracked):
    _, truth = shots
    ids = {k: {tuple(t) for i, (_, t) in enumerate(tracked) if truth.shots[i] == k and t} for k in range(3)}
    assert all(len(v) == 1 for v in ids.values())  # one id through each shot
    assert len(set.union(*ids.values())) == 3  # a new one in every shot


def test_a_fade_is_not_a_cut_and_a_flash_is_not_two(shots):
    frames, _ = shots
    detector = CutDetector()
    fade = [detector(image) for image in frames[:12]]
    assert not any(fade)
    # A cut back and forth within min_shot frames: the first is a cut, the return is not.
    assert detector(frames[SHOTS.cuts[0]]) and not detector(frames[12])


def test_the_offline_window_does_not_cross_a_track_change():
    # Ending tracks at a cut is what keeps the centred window on its side: it never mixes two ids.
    smoother = CentredSmoother(4)
    out = []
    for i in range(20):
        values = {0: np.array([0.0])} if i < 10 else {1: np.array([100.0])}
        out += list(smoother.push(i, values))
    out += list(smoother.flush())
    smoothed = [next(iter(v.values()))[0] for _, v in out]
    assert smoothed[9] == pytest.approx(0.0) and smoothed[10] == pytest.approx(100.0)


def test_live_smoothing_restarts_with_a_new_track():
    smoother = OneEuroSmoother()
    for i in range(10):
        list(smoother.push(i, {0: np.array([0.0])}, i / 24))
    smoother.end_track(0)
    ((_, values),) = list(smoother.push(10, {1: np.array([100.0])}, 10 / 24))
    assert values[1][0] == pytest.approx(100.0)


def test_no_output_frame_is_split_across_a_cut(shots):
    frames, truth = shots
    out, stats = run(frames, "style", size="128")
    assert stats.cuts == SHOTS.cuts and stats.to_json()["shots"] == 3
    assert stats.frames_with_faces == len(frames) - 1  # all but the black first frame
    for cut in SHOTS.cuts:
        for i in range(cut - 3, cut + 3):
            left, right = changed_halves(out[i], frames[i], truth.affines[i])
            assert min(left, right) > 0.45, f"frame {i}: changed {left:.2f} / {right:.2f}"


def test_without_cut_detection_the_styled_face_is_split(shots):
    # The control for the test above: the same clip with cut detection off carries the track over
    # the second cut, and the smoothing window pastes the face half onto the old place.
    frames, truth = shots
    out, stats = run(frames, "style", cut_threshold=0.0, size="128")
    assert stats.cuts == []
    cut = SHOTS.cuts[1]
    worst = min(min(changed_halves(out[i], frames[i], truth.affines[i])) for i in range(cut - 3, cut + 3))
    assert worst < 0.3


def _live_halves(frames, truth, cut_threshold):
    """Live (One Euro) from the first cut to just after the second: per frame (cut, left, right changed)."""
    graph = FilterGraph(ChainRequest("style", {}, {"size": "128"}))
    stages = FaceStages(graph, OneEuroSmoother(), cuts=CutConfig(threshold=cut_threshold))
    try:
        out = {}
        for i in range(SHOTS.cuts[0], SHOTS.cuts[1] + 2):
            work = process_frame(stages, Frame(frames[i], i, i, None))
            out[i] = (work.cut, *changed_halves(work.output, frames[i], truth.affines[i]))
        return out
    finally:
        stages.close()
        graph.close()


def test_live_output_is_not_split_across_a_cut(shots):
    frames, truth = shots
    cut = SHOTS.cuts[1]
    halves = _live_halves(frames, truth, 0.25)
    assert [i for i, (is_cut, _, _) in halves.items() if is_cut] == [cut]
    assert min(*halves[cut][1:], *halves[cut + 1][1:]) > 0.4
    # The control: without cut detection One Euro drags the face from its old place.
    assert min(_live_halves(frames, truth, 0.0)[cut][1:]) < 0.2


@dataclass(frozen=True)
class _NoParams:
    pass


class _Recorder(Filter):
    """Records, per frame, whether it was handed a previous output, and its track starts and ends."""

    Params = _NoParams
    log: list = []

    def __init__(self, params=None, runtime=None, weights=None):
        super().__init__(params, runtime, weights)

    def start_track(self, track_id):
        self.log.append(("start", track_id))
        return track_id

    def end_track(self, track_id, state):
        self.log.append(("end", track_id))

    def process(self, batch, faces):
        for face in faces:
            self.log.append(("item", face.index, face.track_id, face.previous is not None))
        return batch


@register
class FrameRecorder(_Recorder):
    name = "test-frame-recorder"

    @property
    def spec(self):
        return FilterSpec(consumes="frame", value_range=(0.0, 1.0), temporal=True)


@register
class FaceRecorder(_Recorder):
    name = "test-face-recorder"

    @property
    def spec(self):
        return FilterSpec(consumes="crops", size=64, value_range=(0.0, 1.0), temporal=True)


def test_whole_frame_filters_restart_their_memory_and_state_at_a_cut(shots):
    frames, _ = shots
    _Recorder.log.clear()
    run(frames, "test-frame-recorder")
    items = {e[1]: e[3] for e in _Recorder.log if e[0] == "item"}
    assert [i for i, had in sorted(items.items()) if not had] == [0, *SHOTS.cuts]
    assert [e for e in _Recorder.log if e[0] == "start"] == [("start", -1)] * 3


def test_per_face_state_restarts_with_the_new_track_at_a_cut(shots):
    frames, truth = shots
    _Recorder.log.clear()
    run(frames, "test-face-recorder")
    starts = [e[1] for e in _Recorder.log if e[0] == "start"]
    ends = [e[1] for e in _Recorder.log if e[0] == "end"]
    assert len(starts) == 3 and sorted(ends) == sorted(starts)
    first = {e[1]: e[3] for e in _Recorder.log if e[0] == "item"}
    assert [i for i, had in sorted(first.items()) if not had] == [1, *SHOTS.cuts]


def test_stats_report_the_shots_and_the_warping_error(tmp_path):
    clip = tmp_path / "shots.mp4"
    write_shots_sample(clip, ShotsSpec(width=320, height=240, shots=(12, 10, 10), fade=4))
    stats = tmp_path / "stats.json"
    code = main(["-q", "convert", str(clip), str(tmp_path / "out.mp4"), "--filter", "tint", "--param",
                 "region=lips", "--stats", str(stats), "--warping-error"])
    doc = json.loads(stats.read_text())
    assert code == 0 and doc["shots"] == 3 and doc["cuts"] == [12, 22]
    assert doc["frames_with_faces"] == 31  # every frame but the black first one
    assert doc["warping_error"]["pairs"] == 29 and doc["warping_error"]["input"] > 0  # no pair across a cut


def test_a_cut_threshold_out_of_range_is_one_sentence(tmp_path, capsys, face_png):
    code = main(["-q", "convert", str(face_png), str(tmp_path / "o.png"), "--cut-threshold", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--cut-threshold expects a value from 0 to 1" in err


# -- temporal blending through the engine -----------------------------------------------------


@pytest.fixture(scope="module")
def still_background():
    """16 frames of the astronaut moving over a still background, and where her face goes."""
    spec = SampleSpec(width=480, height=360, frames=160, fps=24, face_height=1.0, light=0.0)
    affines, _ = motion(spec)
    frames = render_frames(spec, 16)
    area = np.zeros(frames[0].shape[:2], np.float32)
    for i in range(16):
        box = np.array([[150, 50], [300, 50], [300, 220], [150, 220]], np.float64)
        area = np.maximum(area, fill_polygon(box @ affines[i, 0, :, :2].T + affines[i, 0, :, 2], area.shape))
    return frames, area


def _changed(outputs, frames):
    """Where the filter changed any pixel in any frame: where its stability is measured."""
    return np.maximum.reduce([(np.abs(o.astype(np.int16) - f).max(-1) > 0).astype(np.float32)
                              for o, f in zip(outputs, frames, strict=True)])


def test_temporal_blending_lowers_the_warping_error_of_faces(still_background):
    frames, _ = still_background
    off, _ = run(frames, "style", temporal="0")
    on, _ = run(frames, "style", temporal="0.8")
    plain, _ = run(frames, "style")
    assert all(np.array_equal(a, b) for a, b in zip(off, plain, strict=True))  # temporal=0 is no temporal work
    area = _changed(off, frames)
    before, after = warping_errors(frames, off, area), warping_errors(frames, on, area)
    assert after["ratio"] < before["ratio"] * 0.9, (before, after)


def test_temporal_blending_lowers_the_warping_error_of_whole_frames(still_background):
    frames = still_background[0][:10]
    off, _ = run(frames, "style", scope="frame", temporal="0")
    on, _ = run(frames, "style", scope="frame", temporal="0.8")
    before, after = warping_errors(frames, off), warping_errors(frames, on)
    assert after["ratio"] < before["ratio"] * 0.7, (before, after)


def test_the_warping_error_ranks_a_jittered_output_above_a_steady_one(still_background):
    frames, area = still_background
    rng = np.random.default_rng(0)
    steady = [255 - f for f in frames]  # the same change on every frame: moves with the picture
    jittered = [np.roll(255 - f, tuple(rng.integers(-1, 2, 2)), (0, 1)) for f in frames]
    e_steady, e_jitter = warping_errors(frames, steady, area), warping_errors(frames, jittered, area)
    assert e_steady["ratio"] < 1.1 < e_jitter["ratio"]


# -- any image as a style ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def style_pictures(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("styles")
    paths = []
    for name in ("coffee", "chelsea"):
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def _styled(**params):
    from henshin.filters.style.filter import StyleFilter, StyleParams
    from henshin.kernels.warp import frame_to_batch

    f = StyleFilter(StyleParams(**params))
    try:
        crop = cv2.resize(portrait(), (384, 384), interpolation=cv2.INTER_AREA)
        return crop, f, f.process(frame_to_batch(crop, f.spec.value_range, f.spec.layout), [])
    finally:
        f.close()


def test_a_style_image_changes_the_output_and_the_same_image_gives_the_same_output(style_pictures):
    coffee, chelsea = map(str, style_pictures)
    crop, f, out = _styled(style_image=coffee)
    assert f.spec.size == 384 and f.spec.layout == "NHWC" and out.shape == (1, 384, 384, 3)
    assert np.abs(out[0] * 255 - crop).mean() > 20
    _, _, again = _styled(style_image=coffee)
    _, _, other = _styled(style_image=chelsea)
    assert np.array_equal(out, again)
    assert np.abs(out - other).mean() > 0.02


def test_two_style_images_blend_by_style_mix(style_pictures):
    coffee, chelsea = map(str, style_pictures)
    _, first, _ = _styled(style_image=coffee)
    _, second, _ = _styled(style_image=chelsea)
    _, none, _ = _styled(style_image=coffee, style_image2=chelsea, style_mix=0.0)
    _, half, _ = _styled(style_image=coffee, style_image2=chelsea, style_mix=0.5)
    assert np.array_equal(none._vector, first._vector)
    assert np.allclose(half._vector, (first._vector + second._vector) / 2, atol=1e-6)


def test_a_style_image_works_through_convert(style_pictures, face_png, tmp_path):
    out = tmp_path / "o.png"
    assert main(["-q", "convert", str(face_png), str(out), "--param", f"style_image={style_pictures[0]}"]) == 0
    before, after = cv2.imread(str(face_png)).astype(int), cv2.imread(str(out)).astype(int)
    assert before.shape == after.shape
    assert np.abs(before - after)[90:200, 185:265].mean() > 15  # the face (eyes to chin) is styled
    assert np.array_equal(before[:, :100], after[:, :100])  # the rest is not


def test_bad_style_images_are_one_sentence(tmp_path, style_pictures):
    from henshin.filters.style.filter import StyleFilter, StyleParams

    with pytest.raises(InputNotFoundError, match="style image .*nowhere.png does not exist"):
        StyleParams(style_image=str(tmp_path / "nowhere.png"))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(BadInputError, match="notes.png is not a picture OpenCV can read"):
        StyleFilter(StyleParams(style_image=str(text)))
    with pytest.raises(OptionError, match="style_image2 is the second of two style images"):
        StyleParams(style_image2=str(style_pictures[0]))


# -- background scope --------------------------------------------------------------------------


def test_background_scope_leaves_the_people_untouched():
    spec = SampleSpec(width=480, height=360, frames=24, fps=24, face_height=0.9, light=0.0)
    affines, _ = motion(spec)
    frames = render_frames(spec, 4)
    out, _ = run(frames, "style", scope="background", temporal="0.5")
    inner = np.array([[185, 90], [265, 90], [265, 200], [185, 200]], np.float64)  # eyes to chin
    for i, (o, f) in enumerate(zip(out, frames, strict=True)):
        face = fill_polygon(inner @ affines[i, 0, :, :2].T + affines[i, 0, :, 2], f.shape[:2]) > 0
        assert np.array_equal(o[face], f[face]), f"frame {i}"
        assert np.abs(o[:, :40].astype(int) - f[:, :40]).mean() > 10  # the background left of the photo
