"""The latent filter: edits on the W+ it used, conditioning, mixing, smoothing, ramps, encode_every, errors, end to end."""
# ruff: noqa: F811 - the shared fixtures are imported from latent_fixtures and named as arguments

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from latent_fixtures import (  # noqa: F401 - fixtures used by name
    CPU,
    OFFICIAL_ROWS,
    TINY_DIM,
    TINY_ROWS,
    _unit,
    e4e_tiny,
    face_crop,
    latent,
    official_directions,
    run,
    tiny_directions,
)
from layouts import reference_synthesis

from henshin.cli.main import main
from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.smoothing import OneEuroSmoother
from henshin.engine.stages import FaceStages, Work
from henshin.errors import InputNotFoundError, ModelError, OptionError
from henshin.filters.base import parse_params
from henshin.filters.latent.filter import LatentFilter, quality_levels
from henshin.filters.latent.params import LatentParams
from henshin.runtimes import RuntimeOptions
from henshin.samples import SampleSpec, ShotsSpec, shots_frames, shots_motion, write_sample
from henshin.types import Frame

# -- what an edit does to the W+ --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(e4e_tiny: Path, tiny_directions: dict[str, Path]) -> LatentFilter:
    return latent(e4e_tiny, tiny_directions)


def test_strength_zero_and_no_mix_reproduce_the_unedited_output_exactly(tiny: LatentFilter,
                                                                        face_crop: np.ndarray) -> None:
    crops = np.concatenate([face_crop, np.ascontiguousarray(face_crop[:, :, :, ::-1])])
    tiny.set_params(edit="", mode="replace")
    unedited = run(tiny, crops)
    assert unedited.shape == (2, 3, 256, 256) and np.isfinite(unedited).all()
    tiny.set_params(edit="smile:0,age:0@middle")
    assert np.array_equal(run(tiny, crops), unedited)
    assert torch.equal(tiny.last_latents[0], tiny.last_bases[0])
    tiny.set_params(mode="delta")  # the un-edited output in delta mode is the real face itself
    assert np.array_equal(run(tiny, crops), crops)
    tiny.set_params(edit="smile:2")
    assert not np.array_equal(run(tiny, crops), crops)


def test_an_edit_on_middle_moves_rows_4_to_7_of_the_latent_the_filter_used(tiny: LatentFilter,
                                                                           tiny_directions: dict[str, Path],
                                                                           face_crop: np.ndarray) -> None:
    tiny.set_params(edit="smile:2@middle", mode="delta")
    run(tiny, face_crop)
    used, base = tiny.last_latents[0], tiny.last_bases[0]
    smile = torch.load(tiny_directions["e4e-directions"] / "smile.pt")
    assert torch.equal(used[:4], base[:4]) and torch.equal(used[8:], base[8:])
    torch.testing.assert_close(used[4:8], base[4:8] + 2 * smile.expand(4, -1), atol=1e-5, rtol=0)
    tiny.set_params(edit="smile:2", layers="fine")  # the default rows for edits without @
    run(tiny, face_crop)
    assert torch.equal(tiny.last_latents[0][:8], tiny.last_bases[0][:8])
    tiny.set_params(layers="all")


def test_mixing_takes_exactly_the_chosen_rows_from_the_reference(tiny: LatentFilter, face_png: Path,
                                                                 face_crop: np.ndarray) -> None:
    tiny.set_params(edit="", mix=str(face_png), mix_layers="fine", mode="replace")
    flipped = np.ascontiguousarray(face_crop[:, :, :, ::-1])  # a different face to mix into
    run(tiny, flipped)
    used, base = tiny.last_latents[0], tiny.last_bases[0]
    reference = tiny._references[str(face_png)][0]
    with torch.no_grad():  # the reference is the picture's face, aligned and encoded
        torch.testing.assert_close(reference, tiny.nets.encoder(torch.from_numpy(face_crop))[0], atol=1e-4, rtol=1e-4)
    assert torch.equal(used[8:], reference[8:])
    assert torch.equal(used[:8], base[:8]) and not torch.equal(base[8:], used[8:])
    tiny.set_params(mix=f"{face_png}:0.25", mix_layers="2-3")  # a weight below 1 blends the rows
    run(tiny, flipped)
    used, base = tiny.last_latents[0], tiny.last_bases[0]
    torch.testing.assert_close(used[2:4], 0.75 * base[2:4] + 0.25 * reference[2:4], atol=1e-5, rtol=0)
    assert torch.equal(used[4:], base[4:])
    tiny.set_params(mix="", mix_layers="fine")


def test_the_released_configuration_edits_only_the_rows_asked(e4e_official: Path,
                                                             official_directions: dict[str, Path],
                                                             face_crop: np.ndarray) -> None:
    """The full-width IR-SE50 and 512-d styles at 256 output: strength 0 is the input, @middle moves rows 4-7."""
    filt = latent(e4e_official, official_directions, edit="smile:0", encode_every=30)
    state = filt.start_track(0)
    assert np.array_equal(run(filt, face_crop, [0.0], [state]), face_crop)
    filt.set_params(edit="smile:2@middle")
    out = run(filt, face_crop, [0.04], [state], 1)  # the held W+: the encoder does not run again
    used, base = filt.last_latents[0], filt.last_bases[0]
    assert state.encodes == 1 and used.shape == (OFFICIAL_ROWS, 512)
    assert torch.equal(used[:4], base[:4]) and torch.equal(used[8:], base[8:]) and not torch.equal(used, base)
    assert out.shape == face_crop.shape and not np.array_equal(out, face_crop)


# -- conditioning, GANSpace, direction files (a narrow network in the same layout) ------------------------------


def test_conditioning_leaves_the_conditioned_coordinates_unchanged(e4e_tiny: Path, tiny_directions: dict[str, Path],
                                                                   face_crop: np.ndarray) -> None:
    filt = latent(e4e_tiny, tiny_directions, edit="smile:3,pose:-1", condition="gender,age")
    run(filt, face_crop)
    move = filt.last_latents[0] - filt.last_bases[0]
    e4e, ifg = tiny_directions["e4e-directions"], tiny_directions["interfacegan-directions"]
    gender = torch.from_numpy(np.load(ifg / "stylegan_ffhq_gender_w_boundary.npy")).float()
    age = torch.load(e4e / "age.pt")
    for condition in (gender, age):
        assert (move @ condition.reshape(-1)).abs().max() < 1e-4  # on every row
    unconditioned = latent(e4e_tiny, tiny_directions, edit="smile:3,pose:-1")
    run(unconditioned, face_crop)
    assert ((unconditioned.last_latents[0] - unconditioned.last_bases[0]) @ gender.reshape(-1)).abs().max() > 1e-3


def test_ganspace_components_and_presets_move_along_their_component(e4e_tiny: Path, tiny_directions: dict[str, Path],
                                                                    face_crop: np.ndarray) -> None:
    pca = torch.load(tiny_directions["e4e-directions"] / "ffhq_pca.pt")
    filt = latent(e4e_tiny, tiny_directions, edit="pc3:2@0-1,eye_openness:0.5")
    run(filt, face_crop)
    move = filt.last_latents[0] - filt.last_bases[0]
    step = pca["comp"][3, 0] * pca["std"][3]
    torch.testing.assert_close(move[:2], 2 * step.expand(2, -1), atol=1e-5, rtol=0)
    eyes = pca["comp"][54, 0] * pca["std"][54] * 20 * 0.5  # e4e's preset: component 54 by 20 std on row 7
    torch.testing.assert_close(move[7], eyes, atol=1e-4, rtol=0)
    assert not move[[2, 3, 4, 5, 6, *range(8, TINY_ROWS)]].any()


def test_a_direction_file_given_by_path_is_used(e4e_tiny: Path, tmp_path: Path, face_crop: np.ndarray) -> None:
    direction = _unit(1, TINY_DIM, seed=50)
    torch.save(direction, tmp_path / "mine.pt")
    filt = latent(e4e_tiny, edit=f"{tmp_path / 'mine.pt'}:-1.5@2")
    run(filt, face_crop)
    move = filt.last_latents[0] - filt.last_bases[0]
    torch.testing.assert_close(move[2], -1.5 * direction[0], atol=1e-5, rtol=0)
    assert not move[[0, 1, *range(3, TINY_ROWS)]].any()


# -- time: smoothing, cuts, ramps, encode_every ----------------------------------------------------------------


def test_w_plus_smoothing_lowers_the_frame_to_frame_change_and_restarts_at_a_cut(e4e_tiny: Path) -> None:
    spec = ShotsSpec(width=320, height=240, shots=(8, 8), fade=0, drift=0.02)
    frames = shots_frames(spec, shots_motion(spec))
    graph = FilterGraph(ChainRequest("latent", {}, {"weights": str(e4e_tiny)}), CPU)
    stages = FaceStages(graph, OneEuroSmoother(enabled=False))  # alignment not smoothed: the jitter reaches the crops
    filt = graph.default.links[0].filter
    states: dict[int, object] = {}
    start = filt.start_track
    filt.start_track = lambda track: states.setdefault(track, start(track))
    stages.open()
    real_track, rng = stages._tracker.track, np.random.default_rng(0)

    def jittered(image: np.ndarray):  # landmarks shaken by 2 px per frame, as a noisy tracker would
        update = real_track(image)
        for face in update.faces:
            face.landmarks = face.landmarks + rng.normal(0, 2.0, (1, 3)).astype(np.float32)
        return update

    stages._tracker.track = jittered
    raw: dict[int, list[torch.Tensor]] = {}
    smoothed: dict[int, list[torch.Tensor]] = {}
    try:
        for i, image in enumerate(frames):
            work = stages.track(Work(Frame(image, i, i, Fraction(1, spec.fps))))
            for ready in stages.align(work):
                stages.filter([ready])
                for job in ready.jobs:
                    raw.setdefault(job.face.track_id, []).append(states[job.face.track_id].held.clone())
                    smoothed.setdefault(job.face.track_id, []).append(filt.last_bases[job.face.track_id].clone())
    finally:
        stages.close()
        graph.close()
    assert len(raw) == 2, "the cut starts a new track"
    first, second = sorted(raw)
    assert len(raw[first]) >= 6 and len(raw[second]) >= 6

    def change(codes: list[torch.Tensor]) -> float:
        return float(torch.stack([(b - a).square().mean().sqrt() for a, b in zip(codes, codes[1:], strict=False)]).mean())

    for track in (first, second):
        assert change(smoothed[track]) < 0.7 * change(raw[track])
    # The new shot's first latent is its own encoding: nothing of the first shot's smoothing is left.
    assert torch.equal(smoothed[second][0], raw[second][0])
    assert not torch.equal(smoothed[first][-1], raw[first][-1])


def test_ramp_reaches_full_strength_at_the_set_time_and_restarts_after_a_gap(e4e_tiny: Path, tmp_path: Path,
                                                                             face_crop: np.ndarray) -> None:
    direction = _unit(1, TINY_DIM, seed=51)
    torch.save(direction, tmp_path / "d.pt")
    filt = latent(e4e_tiny, edit=f"{tmp_path / 'd.pt'}:2", ramp="2s", mode="replace", encode_every=30)
    state = filt.start_track(0)

    def move_at(t: float, index: int) -> torch.Tensor:
        run(filt, face_crop, [t], [state], index)
        return (filt.last_latents[0] - filt.last_bases[0])[0]

    full = 2 * direction[0]
    assert not move_at(0.0, 0).any()
    torch.testing.assert_close(move_at(0.5, 1), 0.25 * full, atol=1e-5, rtol=0)
    torch.testing.assert_close(move_at(1.0, 2), 0.5 * full, atol=1e-5, rtol=0)
    torch.testing.assert_close(move_at(1.5, 3), 0.75 * full, atol=1e-5, rtol=0)
    torch.testing.assert_close(move_at(2.0, 4), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(move_at(2.5, 5), full, atol=1e-5, rtol=0)
    # A changed edit ramps from where the face stands to the new strength.
    filt.set_params(edit=f"{tmp_path / 'd.pt'}:-2")
    torch.testing.assert_close(move_at(3.0, 6), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(move_at(3.5, 7), 0.5 * full, atol=1e-5, rtol=0)
    # The effect switched off for a while (no frames for this face): the ramp starts again from 0.
    assert not move_at(6.0, 8).any()
    torch.testing.assert_close(move_at(6.5, 9), -0.25 * full, atol=1e-5, rtol=0)


def test_encode_every_runs_the_encoder_every_n_frames_and_sooner_when_the_face_changes(e4e_tiny: Path,
                                                                                       face_crop: np.ndarray) -> None:
    filt = latent(e4e_tiny, encode_every=4, edit="", mode="replace")
    state = filt.start_track(0)
    for i in range(9):
        run(filt, face_crop, [i / 24], [state], i)
    assert state.encodes == 3  # frames 0, 4 and 8
    other = np.ascontiguousarray(face_crop[:, :, ::-1])  # upside down: a very different crop
    run(filt, other, [9 / 24], [state], 9)
    assert state.encodes == 4


def test_the_governor_trades_encoding_rate_then_output_size_for_speed(e4e_tiny: Path, face_crop: np.ndarray) -> None:
    assert quality_levels(1, 1024) == [(1, 1024), (2, 1024), (4, 1024), (8, 1024), (8, 512), (8, 256)]
    assert quality_levels(1, 256) == [(1, 256), (2, 256), (4, 256), (8, 256)]
    filt = latent(e4e_tiny, edit="")
    assert filt.quality_steps == len(filt._levels) - 1 == 3  # its own ladder, which the engine's governor walks
    filt.set_quality(1)
    assert filt.level == 1
    filt.set_quality(7)
    assert filt.level == 3
    state = filt.start_track(0)
    for i in range(8):
        run(filt, face_crop, [i / 24], [state], i)
    assert state.encodes == 1  # every 8th frame at the lowest level
    filt.set_quality(0)
    assert filt.level == 0
    filt.set_params(govern="0")
    assert filt.quality_steps == 0
    filt.set_quality(3)
    assert filt.level == 0


def test_smaller_size_stops_synthesis_early_and_delta_output_keeps_the_crop_size(e4e_tiny: Path, tmp_path: Path,
                                                                               face_crop: np.ndarray) -> None:
    torch.save(_unit(1, TINY_DIM, seed=52), tmp_path / "d.pt")
    filt = latent(e4e_tiny, edit=f"{tmp_path / 'd.pt'}:3", mode="replace", size=64)
    assert run(filt, face_crop).shape == (1, 3, 64, 64)
    filt.set_params(mode="delta")
    out = run(filt, face_crop)
    assert out.shape == face_crop.shape and not np.array_equal(out, face_crop)
    assert filt.spec.size == 256 and filt.spec.value_range == (-1.0, 1.0) and filt.spec.mask == "face"


def test_stopping_synthesis_early_is_the_generator_cut_at_that_resolution(e4e_tiny: Path) -> None:
    """rosinality's synthesis of a state dict holding only the layers up to 64 px is what size=64 gives."""
    from henshin.filters.latent.networks import Synthesis, load_nets

    state = {k.removeprefix("decoder."): v for k, v in torch.load(e4e_tiny, weights_only=True)["state_dict"].items()
             if k.startswith("decoder.")}
    upto_64 = {k: v for k, v in state.items() if not any(k.startswith(p) for p in (
        "convs.8.", "convs.9.", "convs.10.", "convs.11.", "to_rgbs.4.", "to_rgbs.5."))}
    generator = load_nets(e4e_tiny).generator
    w_plus = torch.randn(2, TINY_ROWS, TINY_DIM, generator=torch.Generator().manual_seed(60))
    with torch.no_grad():
        got = Synthesis(generator, 64)(w_plus)
        torch.testing.assert_close(got, reference_synthesis(upto_64, w_plus[:, :10]), atol=1e-4, rtol=1e-4)
        assert torch.equal(Synthesis(generator, 256)(w_plus), generator(w_plus))


# -- parameters and errors ---------------------------------------------------------------------------------------


def test_required_models_follow_the_parameters(tmp_path: Path) -> None:
    def needed(**raw: str) -> tuple[str, ...]:
        return LatentFilter.required_models(parse_params(LatentParams, raw))

    assert needed() == ("e4e-ffhq",)
    assert needed(edit="smile:2,pc3:1", condition="gender") == ("e4e-ffhq", "e4e-directions", "interfacegan-directions")
    assert needed(random_weights="1", edit="smile") == ()
    (tmp_path / "e4e.pt").write_bytes(b"")
    assert needed(weights=str(tmp_path / "e4e.pt"), edit="eyeglasses") == ("interfacegan-directions",)


@pytest.mark.parametrize(("raw", "message"), [
    ({"edit": "grin:2"}, r"unknown direction 'grin' in edit=; the known ones are: age, smile, pose, .*pc0-pc79"),
    ({"edit": "smile:lots"}, r"NAME\[:STRENGTH\]\[@LAYERS\]"),
    ({"edit": "smile@top"}, r"all, coarse, middle, fine, A-B or N, got 'top'"),
    ({"layers": "7-3"}, r"0 <= A <= B"),
    ({"condition": "gender", "edit": "gender:1"}, r"edit gender is also a condition"),
    ({"ramp": "soon"}, r"a time like 2s or 500ms"),
    ({"encode_every": "0"}, r"encode_every expects a value from 1"),
    ({"size": "300"}, r"power of two"),
])
def test_bad_parameters_are_one_sentence(raw: dict[str, str], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_params(LatentParams, raw)


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="reference .*nobody.jpg does not exist"):
        parse_params(LatentParams, {"mix": str(tmp_path / "nobody.jpg")})
    with pytest.raises(InputNotFoundError, match="direction file .*none.pt does not exist"):
        parse_params(LatentParams, {"edit": f"{tmp_path / 'none.pt'}:1"})


def test_rows_outside_the_generator_and_directions_of_another_size_are_refused(e4e_tiny: Path,
                                                                               official_directions: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    with pytest.raises(OptionError, match=r"layers names rows 4-14, but the generator has rows 0-13"):
        latent(e4e_tiny, layers="4-14")
    torch.save(_unit(1, TINY_DIM, seed=53), tmp_path / "d.pt")
    with pytest.raises(OptionError, match=r"rows 13-18, but the generator has rows 0-13"):
        latent(e4e_tiny, edit=f"{tmp_path / 'd.pt'}:1@13-18")
    with pytest.raises(OptionError, match=r"direction smile is \(1, 512\), which does not fit .* \(14 rows of 16\)"):
        latent(e4e_tiny, official_directions, edit="smile:1")
    with pytest.raises(OptionError, match=r"size 512 is larger than the generator's 256 px"):
        latent(e4e_tiny, size=512)


def test_missing_weights_name_the_commands(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match=r"henshin models pull e4e-ffhq.*henshin models import e4e-ffhq PATH"):
        FilterGraph(ChainRequest("latent", {}, {"edit": "smile:1"}), CPU)
    with pytest.raises(ModelError, match=r"model e4e-ffhq was not given to the latent filter; run `henshin models pull e4e-ffhq`"):
        LatentFilter(parse_params(LatentParams, {}), CPU, {})


def test_a_live_change_that_fails_keeps_the_filter_as_it_was(e4e_tiny: Path, tiny_directions: dict[str, Path]) -> None:
    filt = latent(e4e_tiny, {"e4e-directions": tiny_directions["e4e-directions"]}, edit="smile:1")
    plan = filt.plan
    with pytest.raises(ModelError, match="interfacegan-directions was not given"):
        filt.set_params(edit="gender:1")
    assert filt.params.edit == "smile:1" and filt.plan is plan


# -- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("latent-clip") / "short.mp4"
    write_sample(path, SampleSpec(width=320, height=240, frames=3, fps=24, face_height=1.3, audio=False))
    return path


@pytest.fixture(scope="module")
def plain(short_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The short clip through henshin's lossless encode with nothing changed: the bytes outside any edit."""
    from conftest import decode_video

    out = tmp_path_factory.mktemp("latent-plain") / "plain.mp4"
    assert main(["-q", "convert", str(short_clip), str(out), "--param", "strength=0", "--crf", "0"]) == 0
    return decode_video(out)[0]


def test_convert_runs_end_to_end_with_random_weights(short_clip: Path, plain: list[np.ndarray], tmp_path: Path,
                                                     caplog) -> None:
    from conftest import decode_video, face_box, inside

    out = tmp_path / "out.mp4"
    assert main(["-q", "convert", str(short_clip), str(out), "--filter", "latent", "--runtime", "torch",
                 "--param", "random_weights=1", "--param", "edit=smile:2,age:-1@coarse", "--param", "mode=replace",
                 "--param", "ramp=0", "--crf", "0"]) == 0
    assert "output is meaningless" in caplog.text  # henshin's log goes to stderr
    before, _, _ = decode_video(short_clip)
    after, _, _ = decode_video(out)
    assert len(after) == len(before) == 3
    for source, result, same in zip(before, after, plain, strict=True):
        face, near = (inside(face_box(source, m), source.shape) for m in (0.0, 0.3))
        changed = np.abs(result.astype(int) - same).max(-1) > 24
        assert changed[face].mean() > 0.25  # the face is replaced: measured 0.33 to 0.64 of its box
        # the rest of the frame keeps its bytes (measured: none differ even 10% beyond the landmarks' box)
        assert np.array_equal(result[~near], same[~near])


def test_live_runs_end_to_end_with_random_weights_and_changes_the_face(short_clip: Path, tmp_path: Path) -> None:
    import json

    from conftest import decode_video, face_box, inside

    stats, record = tmp_path / "s.json", tmp_path / "rec.mp4"
    assert main(["-q", "live", "--source", str(short_clip), "--sink", "null", "--max-frames", "3", "--filter",
                 "latent", "--runtime", "torch", "--param", "random_weights=1", "--param", "edit=smile:1.5",
                 "--param", "mode=replace", "--record", str(record), "--stats", str(stats)]) == 0
    assert json.loads(stats.read_text())["frames_processed"] >= 1
    sources, _, _ = decode_video(short_clip)
    shown, _, _ = decode_video(record)
    assert shown
    changes = []
    for image in shown:
        source = min(sources, key=lambda o: np.abs(image.astype(int) - o).mean())
        change = np.abs(image.astype(int) - source).max(-1)
        face = inside(face_box(source), source.shape)
        changes.append((change[face].mean(), change[~inside(face_box(source, 0.3), source.shape)].mean()))
    face_change, rest_change = max(changes)  # the recording is lossy: mean changes inside and outside the face
    assert face_change > 20 and rest_change < 8  # measured 73 to 76 and 3.5


@pytest.fixture(scope="module")
def still_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """Four identical frames of the whole face (320×240, lossless) and the clip through henshin unchanged."""
    import av
    import cv2
    from conftest import decode_video

    from henshin.samples import background, portrait

    image = background(320, 240)
    image[:, 40:280] = cv2.resize(portrait(), (240, 240), interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("latent-still") / "still.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = 320, 240, "yuv420p", {"crf": "0"}
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    plain = path.with_name("plain.mp4")
    assert main(["-q", "convert", str(path), str(plain), "--param", "strength=0", "--crf", "0"]) == 0
    return path, decode_video(plain)[0]


def test_convert_with_a_checkpoint_and_the_whole_crop_pasted(still_clip: tuple[Path, list[np.ndarray]],
                                                           e4e_tiny: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import crop_masks, decode_video, frame_from_crop_matrix

    short_clip, plain = still_clip

    encoded: list[int] = []
    encode = LatentFilter._encode

    def counted(self: LatentFilter, crops: torch.Tensor) -> torch.Tensor:
        encoded.append(len(crops))
        return encode(self, crops)

    monkeypatch.setattr(LatentFilter, "_encode", counted)
    out = tmp_path / "out.mp4"
    torch.save(_unit(1, TINY_DIM, seed=54), tmp_path / "d.pt")
    assert main(["-q", "convert", str(short_clip), str(out), "--filter", "latent", "--runtime", "torch",
                 "--param", f"weights={e4e_tiny}", "--param", f"edit={tmp_path / 'd.pt'}:4", "--param", "paste=crop",
                 "--param", "encode_every=2", "--param", "smooth=2", "--crf", "0"]) == 0
    assert sum(encoded) == 2  # frames 0 and 2 of 4: the face does not change, so every second frame
    after, _, _ = decode_video(out)
    before, _, _ = decode_video(short_clip)
    assert len(after) == len(before) == 4
    for source, result, same in zip(before, after, plain, strict=True):
        inner, outer = crop_masks(source, margin=12)
        changed = np.any(result != same, axis=2)
        assert changed[inner].mean() > 0.9  # measured 1.0: the crop square pasted whole
        assert not changed[~outer].any()  # nothing beyond the crop square changed
        inverse = frame_from_crop_matrix(source)
        for u, v in ((16, 16), (240, 16), (16, 240), (240, 240)):  # the corners, outside any face oval (60+)
            x, y = inverse @ (u, v, 1)
            assert np.abs(result[round(y), round(x)].astype(int) - same[round(y), round(x)]).max() > 24, (u, v)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_path_matches_the_cpu(e4e_tiny: Path, tiny_directions: dict[str, Path], face_crop: np.ndarray) -> None:
    cpu = latent(e4e_tiny, tiny_directions, edit="smile:2@middle", mode="delta")
    gpu = LatentFilter(parse_params(LatentParams, {"weights": str(e4e_tiny), "edit": "smile:2@middle"}),
                       RuntimeOptions(runtime="torch", device="cuda", precision="fp32"), tiny_directions)
    assert gpu.spec.array == "torch" and gpu.spec.device.startswith("cuda")
    want = run(cpu, face_crop)
    got = run(gpu, torch.from_numpy(face_crop).cuda())
    assert got.is_cuda
    np.testing.assert_allclose(got.cpu().numpy(), want, atol=2e-3)


def test_onnx_runtime_runs_the_filter_as_torch_does(e4e_tiny: Path, tiny_directions: dict[str, Path],
                                                    face_crop: np.ndarray, tmp_path: Path) -> None:
    raw = {"weights": str(e4e_tiny), "edit": "smile:2@middle", "mode": "replace"}
    onnx = LatentFilter(parse_params(LatentParams, raw), RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path),
                        tiny_directions)
    want = run(latent(e4e_tiny, tiny_directions, **{k: v for k, v in raw.items() if k != "weights"}), face_crop)
    got = run(onnx, face_crop)
    assert type(onnx.nets.encode).__name__ == "OnnxRuntime" and got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-3)
