"""The gnr filter: a style code per face that never drifts, references and saved looks, morphs, every runtime."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import FramesSource, KeepSink, crop_masks, stages_for

from henshin import runtimes as rt
from henshin.cli.main import main
from henshin.errors import BadInputError, InputNotFoundError, ModelError, OptionError, OutputError
from henshin.filters.base import parse_params
from henshin.filters.gnr.filter import GNRFilter, GNRParams, read_reference
from henshin.models.checkpoints import load_checkpoint
from henshin.nets.gnr import FaceToAnime, load_gnr, style_from_seed
from henshin.runtimes import NetworkSpec, RuntimeOptions
from henshin.samples import SampleSpec, render_frames, write_sample
from henshin.types import FaceContext

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make(weights: Path, runtime: RuntimeOptions | None = None, **params: str) -> GNRFilter:
    return GNRFilter(parse_params(GNRParams, {"weights": str(weights), **params}),
                     runtime or RuntimeOptions(runtime="torch", device="cpu"))


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (3, 3, 256, 256)).astype(np.float32)


def contexts(gnr: GNRFilter, tracks: list[int], times: list[float] | None = None) -> list[FaceContext]:
    looks = {t: gnr.start_track(t) for t in dict.fromkeys(tracks)}
    return [FaceContext(t, looks[t], i, (times or [0.0] * len(tracks))[i]) for i, t in enumerate(tracks)]


# -- the official layout as a filter --------------------------------------------------------------


def test_an_official_layout_checkpoint_runs_as_a_filter_into_the_declared_range(gnr_training_file: Path,
                                                                                  crops: np.ndarray) -> None:
    gnr = make(gnr_training_file)
    spec = gnr.spec
    assert (spec.consumes, spec.size, spec.value_range, spec.mask, spec.crop) == ("crops", 256, (-1, 1), "crop",
                                                                                   "aligned")
    out = gnr.process(crops, contexts(gnr, [0, 1, 2]))
    assert out.shape == crops.shape and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1 and np.isfinite(out).all()
    assert out.std() > 0.01  # not a constant picture
    box = make(gnr_training_file, crop="box", border="0.2", strength="0.5")
    assert (box.spec.crop, box.spec.box_scale, box.spec.border, box.opacity) == ("box", 1.3, 0.2, 0.5)


def test_same_code_and_input_give_identical_output(gnr_training_file: Path, crops: np.ndarray) -> None:
    a, b = make(gnr_training_file, seed="5"), make(gnr_training_file, seed="5")
    faces = contexts(a, [0, 1, 2])
    first = a.process(crops, faces)
    assert np.array_equal(first, a.process(crops, faces))  # the same faces again
    assert np.array_equal(first, b.process(crops, contexts(b, [0, 1, 2])))  # another filter, same seed
    other = make(gnr_training_file, seed="6")
    assert not np.array_equal(first, other.process(crops, contexts(other, [0, 1, 2])))


def test_face_k_gets_seed_plus_k_in_order_of_appearance_not_by_track_id(gnr_training_file: Path) -> None:
    gnr = make(gnr_training_file, seed="40")
    model = load_gnr(gnr_training_file)
    looks = [gnr.start_track(t) for t in (17, 3, 250)]
    for k, look in enumerate(looks):
        assert look.order == k
        assert np.array_equal(look.code, style_from_seed(40 + k)[0].numpy())
        with torch.no_grad():
            assert np.allclose(look.w, model.map_style(style_from_seed(40 + k))[0].numpy(), atol=1e-6)
    assert not np.array_equal(looks[0].w, looks[1].w)


def test_codes_differ_between_faces_and_stay_constant_over_a_clip(gnr_training_file: Path) -> None:
    from henshin.engine.offline import OfflineConfig, run_offline

    frames = render_frames(SampleSpec(width=640, height=240, frames=6, faces=2, face_height=1.1))
    stages = stages_for("gnr", weights=str(gnr_training_file))
    gnr = stages.graph.default.links[0].filter
    seen: dict[int, list[tuple[int, np.ndarray]]] = {}
    run = gnr.process

    def spy(batch, faces):
        for c in faces:
            seen.setdefault(c.track_id, []).append((c.index, gnr.w_at(c.state, c.time).copy()))
        return run(batch, faces)

    gnr.process = spy
    sink = KeepSink()
    try:
        run_offline(FramesSource(frames), stages, sink, OfflineConfig(progress=False, batch_frames=4))
    finally:
        stages.close()
        stages.graph.close()
    assert len(seen) == 2 and all(len(items) == 6 for items in seen.values())
    (first, *rest_a), (second, *rest_b) = seen.values()
    assert all(np.array_equal(w, first[1]) for _, w in rest_a)
    assert all(np.array_equal(w, second[1]) for _, w in rest_b)
    assert not np.allclose(first[1], second[1])
    assert gnr.spec.size == 256 and len(sink.images) == 6


def test_reference_gives_every_face_the_pictures_style(gnr_training_file: Path, face_png: Path) -> None:
    gnr = make(gnr_training_file, reference=str(face_png), seed="3")
    model = load_gnr(gnr_training_file)
    with torch.no_grad():
        want = model.style_of(torch.from_numpy(read_reference(face_png, 256)))[0].numpy()
    a, b = gnr.start_track(0), gnr.start_track(1)
    assert np.allclose(a.code, want, atol=1e-6) and np.array_equal(a.code, b.code)


def test_a_reference_needs_g_b2a_ema_and_says_so_in_one_sentence(gnr_training_file: Path, face_png: Path,
                                                                  tmp_path: Path) -> None:
    ckpt = load_checkpoint(gnr_training_file)
    only = tmp_path / "a2b.pt"
    torch.save({"G_A2B_ema": ckpt["G_A2B_ema"]}, only)
    make(only)  # loads fine without a reference
    with pytest.raises(ModelError) as info:
        make(only, reference=str(face_png))
    message = str(info.value)
    assert "G_B2A_ema" in message and "\n" not in message and message.count(". ") == 0


def test_a_reference_that_is_no_picture_is_refused(gnr_training_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "look.png"
    bad.write_text("not a picture")
    with pytest.raises(BadInputError, match=r"reference .*look\.png is not a picture"):
        make(gnr_training_file, reference=str(bad))


def test_a_saved_style_brings_the_same_look_back(gnr_training_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "look.npy"
    first = make(gnr_training_file, seed="12", save_style=str(path))
    assert np.array_equal(np.load(path), style_from_seed(12)[0].numpy())
    assert not list(tmp_path.glob(".*partial"))
    again = make(gnr_training_file, style_file=str(path), seed="99")
    assert np.array_equal(again.start_track(5).w, first.start_track(0).w)
    assert np.array_equal(again.start_track(6).code, np.load(path))  # every face takes the file's look
    pt = tmp_path / "look.pt"
    torch.save(style_from_seed(12), pt)  # a (1, 8) tensor, as the official notebooks keep styles
    assert np.array_equal(make(gnr_training_file, style_file=str(pt)).start_track(0).code, np.load(path))
    with pytest.raises(OutputError, match=r"look\.npy already exists"):
        make(gnr_training_file, save_style=str(path))
    np.save(tmp_path / "wrong.npy", np.zeros((2, 8), np.float32))
    with pytest.raises(BadInputError, match=r"wrong\.npy holds shape \(2, 8\); expected a style code of 8 numbers"):
        make(gnr_training_file, style_file=str(tmp_path / "wrong.npy"))


def test_morph_reaches_the_second_look_at_the_set_time(gnr_training_file: Path, crops: np.ndarray) -> None:
    gnr = make(gnr_training_file, seed="1", morph="9", morph_seconds="2")
    start, end = make(gnr_training_file, seed="1"), make(gnr_training_file, seed="9")
    look = gnr.start_track(4)
    face = crops[:1]
    at = {t: gnr.process(face, [FaceContext(4, look, 0, 10.0 + t)]) for t in (0.0, 1.0, 2.0, 3.0)}
    assert look.start == 10.0  # the face's first frame
    assert np.array_equal(at[0.0], start.process(face, contexts(start, [0])))
    assert np.array_equal(at[2.0], end.process(face, contexts(end, [0])))
    assert np.array_equal(at[3.0], at[2.0])  # clamped after the set time
    assert not np.allclose(at[1.0], at[0.0]) and not np.allclose(at[1.0], at[2.0])
    assert np.allclose(gnr.w_at(look, 11.0), (look.w + look.target) / 2, atol=1e-6)
    second = gnr.start_track(5)  # the next face morphs from seed + 1 to morph + 1
    assert np.array_equal(gnr.w_at(second, 50.0), second.w) and second.start == 50.0
    assert np.array_equal(gnr.w_at(second, 52.0), make(gnr_training_file, seed="10").start_track(0).w)


def test_a_new_seed_restyles_the_faces_in_place_keeping_their_order(gnr_training_file: Path,
                                                                     face_png: Path) -> None:
    gnr = make(gnr_training_file, seed="1")
    a, b = gnr.start_track(10), gnr.start_track(11)
    gnr.set_params(seed="20")
    assert np.array_equal(a.code, style_from_seed(20)[0].numpy())
    assert np.array_equal(b.code, style_from_seed(21)[0].numpy())
    gnr.end_track(10, a)
    gnr.set_params(seed="30")
    assert np.array_equal(b.code, style_from_seed(31)[0].numpy())  # order kept after the first face left
    assert gnr.start_track(12).order == 2
    with pytest.raises(InputNotFoundError):
        gnr.set_params(style_file="/nonexistent/look.npy")
    assert gnr.params.seed == 30 and np.array_equal(b.code, style_from_seed(31)[0].numpy())
    gnr.set_params(reference=str(face_png))
    assert np.array_equal(b.code, make(gnr_training_file, reference=str(face_png)).start_track(0).code)


@pytest.mark.parametrize(("params", "error", "match"), [
    ({"reference": "/nonexistent/anime.png"}, InputNotFoundError, r"reference file /nonexistent/anime\.png does not exist"),
    ({"style_file": "/nonexistent/look.npy"}, InputNotFoundError, r"style_file file /nonexistent/look\.npy"),
    ({"weights": "/nonexistent/GNR.pt"}, InputNotFoundError, r"weights file /nonexistent/GNR\.pt"),
    ({"reference": "{png}", "style_file": "{png}"}, OptionError, "give one of them"),
    ({"weights": "{png}", "random_weights": "1"}, OptionError, "give one of them"),
    ({"save_style": "look.txt"}, OptionError, r"save_style expects a \.npy file name"),
    ({"save_style": "/nonexistent/dir/look.npy"}, OutputError, "does not exist; create it first"),
    ({"morph_seconds": "0"}, OptionError, "morph_seconds expects a number of seconds above 0"),
    ({"strength": "1.5"}, OptionError, "strength expects a value from 0 to 1"),
    ({"seed": "-2"}, OptionError, "seed expects a value from 0"),
    ({"crop": "oval"}, OptionError, "crop expects one of aligned, box"),
])
def test_parameters_are_checked_before_any_work(face_png: Path, params: dict, error: type, match: str) -> None:
    raw = {k: v.replace("{png}", str(face_png)) for k, v in params.items()}
    with pytest.raises(error, match=match) as info:
        parse_params(GNRParams, raw)
    assert "\n" not in str(info.value)


def test_the_registry_model_is_asked_for_unless_weights_are_given(face_png: Path) -> None:
    assert GNRFilter.required_models(GNRParams()) == ("gnr",)
    assert GNRFilter.required_models(GNRParams(weights=str(face_png))) == ()
    assert GNRFilter.required_models(GNRParams(random_weights=True)) == ()
    from henshin.models.registry import default_registry

    entry = default_registry().get("gnr")
    assert entry.filter == "gnr" and entry.loader == "henshin.nets.gnr:load_gnr"
    assert "MIT" in entry.licence and "unstated" in entry.licence
    assert set(entry.keep) == {"G_A2B_ema", "G_B2A_ema"}


def test_looking_up_the_filter_does_not_import_torch() -> None:
    code = ("import sys; from henshin.filters.base import filter_class; "
            "assert filter_class('gnr').name == 'gnr'; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# -- the command line ------------------------------------------------------------------------------


def test_without_weights_convert_says_how_to_get_them(face_png: Path, tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    code = main(["-q", "convert", str(face_png), str(tmp_path / "out.png"), "--filter", "gnr"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err
    assert "henshin models pull gnr" in lines[0] and "henshin models import gnr PATH" in lines[0]
    assert not (tmp_path / "out.png").exists()


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    write_sample(path, SampleSpec(width=320, height=240, frames=5, fps=24, face_height=1.3))
    return path


def test_convert_with_random_weights_runs_end_to_end_and_says_so(short_clip: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    from conftest import decode_video

    out, plain = tmp_path / "anime.mp4", tmp_path / "plain.mp4"
    with caplog.at_level(logging.WARNING, logger="henshin"):
        assert main(["-q", "convert", str(short_clip), str(out), "--filter", "gnr", "--param", "random_weights=1",
                     "--runtime", "torch", "--crf", "0"]) == 0
    assert any("random weights" in r.getMessage() and "testing only" in r.getMessage() for r in caplog.records)
    # the same frames through the same encoder, unchanged: the bytes outside the crop must be these
    assert main(["-q", "convert", str(short_clip), str(plain), "--param", "strength=0", "--crf", "0"]) == 0
    before, _, _ = decode_video(short_clip)
    after, _, _ = decode_video(out)
    unchanged, _, _ = decode_video(plain)
    assert len(after) == len(before) == 5
    for source, result, same in zip(before, after, unchanged, strict=True):  # every frame's crop replaced
        inner, outer = crop_masks(source, margin=12)
        assert (np.abs(result.astype(int) - same).max(-1)[inner] > 24).mean() > 0.9  # measured 0.991 to 0.996
        assert np.array_equal(result[~outer], same[~outer])  # 12 crop pixels beyond the square: nothing changed


def test_the_whole_crop_is_pasted_and_the_rest_of_the_frame_keeps_its_bytes(gnr_training_file: Path,
                                                                             face_png: Path, tmp_path: Path) -> None:
    from henshin.engine.align import ffhq_quad, quad_matrix
    from henshin.engine.tracking import FaceTracker, TrackerConfig

    out = tmp_path / "anime.png"
    assert main(["-q", "convert", str(face_png), str(out), "--filter", "gnr", "--param",
                 f"weights={gnr_training_file}", "--runtime", "torch"]) == 0
    before = cv2.imread(str(face_png))
    changed = np.abs(cv2.imread(str(out)).astype(int) - before).sum(2) > 0
    tracker = FaceTracker(TrackerConfig())
    try:
        (face,) = tracker.track(cv2.cvtColor(before, cv2.COLOR_BGR2RGB)).faces
    finally:
        tracker.close()
    matrix = quad_matrix(ffhq_quad(face.landmarks), 256)
    ys, xs = np.nonzero(changed)
    in_crop = matrix @ np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    assert in_crop.min() > -2 and in_crop.max() < 258  # nothing outside the crop changed
    inverse = cv2.invertAffineTransform(matrix)
    for u, v in ((40, 40), (216, 40), (40, 216), (216, 216), (128, 128)):  # corners lie outside the face oval
        x, y = inverse @ (u, v, 1)
        assert changed[round(y), round(x)], (u, v)


# -- runtimes --------------------------------------------------------------------------------------


def test_onnx_export_parity_and_the_filter_under_onnx_runtime(gnr_training_file: Path, crops: np.ndarray,
                                                               tmp_path: Path) -> None:
    model = load_gnr(gnr_training_file)
    spec = NetworkSpec("gnr-w-test", (("image", (3, 256, 256)), ("w", (32,))), module=FaceToAnime(model.generator))
    options = RuntimeOptions(runtime="onnxruntime", cache_dir=tmp_path)
    assert rt.parity(spec, rt.build_runtime(spec, options), batch=2) < 1e-3
    on_onnx, on_torch = make(gnr_training_file, options, seed="4"), make(gnr_training_file, seed="4")
    assert on_onnx.spec.array == "numpy"
    got = on_onnx.process(crops, contexts(on_onnx, [0, 1, 0]))
    want = on_torch.process(crops, contexts(on_torch, [0, 1, 0]))
    assert np.abs(got - want).max() < 1e-3


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("options", [
    RuntimeOptions(runtime="torch", device="cuda", precision="fp32"),
    RuntimeOptions(runtime="torch", device="cuda", precision="fp16", cuda_graphs=True),
], ids=["torch-fp32", "torch-fp16-cuda-graphs"])
def test_on_the_gpu_batches_stay_on_the_device_and_match_the_cpu(gnr_training_file: Path, crops: np.ndarray,
                                                                  options: RuntimeOptions, tmp_path: Path) -> None:
    options.cache_dir = tmp_path
    gpu, cpu = make(gnr_training_file, options, seed="2"), make(gnr_training_file, seed="2")
    assert gpu.spec.array == "torch" and gpu.spec.device.startswith("cuda")
    batch = torch.from_numpy(crops).to(gpu.spec.device)
    got = gpu.process(batch, contexts(gpu, [0, 1, 2]))
    assert got.device == batch.device and got.dtype == torch.float32
    want = cpu.process(crops, contexts(cpu, [0, 1, 2]))
    tolerance = 1e-3 if options.precision == "fp32" else 0.05
    assert np.abs(got.cpu().numpy() - want).mean() < tolerance
