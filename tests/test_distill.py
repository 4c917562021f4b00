"""henshin distill: pairs as the teacher sees them, training, resuming, the stored student, and the filter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("safetensors")

from distill_fixtures import TEACHER, TINY, SmoothTeacher, register_teacher, student_config  # noqa: E402

from henshin.cli.main import main  # noqa: E402
from henshin.errors import ModelError  # noqa: E402
from henshin.nets import student as student_net  # noqa: E402
from henshin.samples import SampleSpec, write_sample  # noqa: E402

CLIP = SampleSpec(width=320, height=240, frames=40, fps=24, face_height=1.3, audio=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("distill") / "face.mp4"
    write_sample(path, CLIP)
    return path


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("distill") / "short.mp4"
    write_sample(
        path, SampleSpec(width=320, height=240, frames=14, fps=24, face_height=1.3, audio=False)
    )
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """HENSHIN_HOME in a temporary folder, the test teacher and the tiny student size, for the module."""
    register_teacher()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HENSHIN_HOME", str(tmp_path_factory.mktemp("home")))
        mp.setitem(student_net.SIZES, "tiny", TINY)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny networks: one thread is faster than two fighting
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def learnt(home, clip, tmp_path_factory):
    """One tiny student of the smooth teacher, stored as model ``smooth``; (its folder, the time it took)."""
    from henshin.distill.run import distill

    SmoothTeacher.seen.clear()
    start = time.monotonic()
    folder = distill(
        student_config("smooth", clip, tmp_path_factory.mktemp("work")), say=lambda line: None
    )
    return folder, time.monotonic() - start


def test_a_tiny_student_learns_a_smooth_teacher(learnt):
    from henshin.filters.student.model import read_student

    folder, seconds = learnt
    meta, _ = read_student(folder)
    assert meta.held_out and meta.held_out_psnr >= 30.0, meta
    assert meta.steps == 200 and meta.student == "tiny" and meta.size == 64
    assert meta.teacher["chain"] == TEACHER and meta.crop == "aligned" and meta.mask == "face"
    print(f"tiny student: {meta.held_out_psnr} dB held out in {seconds:.1f} s")


def test_the_stored_student_is_listed_and_verified(learnt, capsys):
    assert main(["models", "list"]) == 0
    assert "smooth" in capsys.readouterr().out
    assert main(["models", "verify", "smooth"]) == 0
    out = capsys.readouterr().out
    assert "opens in ONNX Runtime" in out and "loads into its network strictly" in out


def test_onnx_and_torch_agree(learnt):
    import onnxruntime as ort

    from henshin.filters.student.model import load_student_file

    folder, _ = learnt
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    got = ort.InferenceSession(
        str(folder / "student.onnx"), providers=["CPUExecutionProvider"]
    ).run(None, {"image": x})[0]
    with torch.inference_mode():
        want = load_student_file(folder / "student.safetensors")(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_the_teacher_sees_the_varied_input_the_student_trains_on(home, clip, tmp_path):
    """Augmentation comes before the teacher: what the teacher was given is the student's (varied) input."""
    import cv2

    from henshin.distill.pairs import PairMaker
    from henshin.distill.teacher import build_teacher

    SmoothTeacher.seen.clear()
    config = student_config("varied", clip, tmp_path, max_pairs=12, held_out_frames=2)
    teacher = build_teacher(TEACHER, {}, None, tmp_path, lambda line: None)
    (tmp_path / "pairs").mkdir()
    try:
        pairs = PairMaker(config, teacher, tmp_path, None).run()
    finally:
        teacher.close()
    train, held = pairs.stack("train"), pairs.stack("held")
    seen = [crop for _, crop in SmoothTeacher.seen]
    assert len(seen) == len(train) + len(held)
    inputs = [x.astype(np.float32) for x, _ in [*train, *held]]
    # Pairs are in the teacher's order: each student input is the crop the teacher was given (at the
    # student's size), far closer to it than the other draw of the same face is.
    for k, crop in enumerate(seen):
        shrunk = cv2.resize(crop.transpose(1, 2, 0) * 255, (64, 64), interpolation=cv2.INTER_AREA)
        own = np.abs(shrunk - inputs[k]).mean()
        other = np.abs(shrunk - inputs[k ^ 1]).mean() if k < len(train) else np.inf
        assert own < 8.0 and own < 0.5 * other, (k, own, other)


def test_held_out_frames_are_never_trained_on(home, clip, tmp_path):
    from henshin.distill.pairs import PairMaker, held_out_from
    from henshin.distill.teacher import build_teacher
    from henshin.distill.train import Batches

    SmoothTeacher.seen.clear()
    config = student_config("held", clip, tmp_path, max_pairs=40)
    teacher = build_teacher(TEACHER, {}, None, tmp_path, lambda line: None)
    (tmp_path / "pairs").mkdir()
    try:
        pairs = PairMaker(config, teacher, tmp_path, None).run()
    finally:
        teacher.close()
    first_held = held_out_from(CLIP.frames)
    frames = [index for index, _ in SmoothTeacher.seen]
    assert sum(i >= first_held for i in frames) == pairs.held_count > 0
    assert sum(i < first_held for i in frames) == pairs.train_count > 0
    # Training draws from the training shards only.
    batches = Batches(pairs, 32, 4, "cpu")
    assert len(batches) == pairs.train_count
    held = pairs.stack("held")[:, 0]
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        x, _ = batches.draw(generator)
        for patch in (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy():
            assert not any(_contains(h, patch) for h in held)


def _contains(image: np.ndarray, patch: np.ndarray) -> bool:
    import cv2

    found = cv2.matchTemplate(image, patch, cv2.TM_SQDIFF)
    return float(found.min()) == 0.0


RESUMABLE = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from distill_fixtures import TINY, register_teacher, student_config
import henshin.distill.train as train
from henshin.distill.run import distill
from henshin.nets import student
import torch
torch.set_num_threads(1)
train.CHECKPOINT_S = 0.3
register_teacher()
student.SIZES["tiny"] = TINY
distill(student_config("resumed", Path({clip!r}), Path({work!r}), steps=40, max_pairs=16), say=print)
"""


def test_a_killed_run_resumes_and_finishes(home, clip, tmp_path):
    script = tmp_path / "run.py"
    work = tmp_path / "work"
    script.write_text(
        textwrap.dedent(
            RESUMABLE.format(tests=str(Path(__file__).parent), clip=str(clip), work=str(work))
        )
    )
    env = {**os.environ, "HENSHIN_HOME": str(tmp_path / "home")}
    first = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 600
    while not (work / "train.pt").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (work / "train.pt").exists(), first.stdout.read().decode()[-2000:]
    second = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900
    )
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    resumed = int(second.stdout.split("training resumes at step ")[1].split()[0])
    assert 0 < resumed < 40
    from henshin.filters.student.model import read_student

    meta, _ = read_student(tmp_path / "home" / "models" / "resumed")
    assert meta.steps == 40


def test_the_weights_load_strictly_and_a_wrong_file_is_refused_by_name(learnt, tmp_path):
    from safetensors.torch import load_file, save_file

    from henshin.filters.student.model import read_student

    folder, _ = learnt
    state = load_file(str(folder / "student.safetensors"))
    state.pop(next(iter(state)))
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(ModelError, match=f"{broken}.*is not a henshin student checkpoint: missing"):
        student_net.load_student(broken, TINY)
    from henshin.filters.style import bundled_model

    other = bundled_model("multistyle26")
    with pytest.raises(ModelError, match=f"{other} is not a henshin student"):
        read_student(other)


def test_distill_then_convert_with_the_student(home, short_clip, tmp_path, capsys):
    from conftest import decode_video

    clip, work, out = short_clip, tmp_path / "work", tmp_path / "out.mp4"
    assert (
        main(
            [
                "distill",
                "styled",
                "--filter",
                "style",
                "--param",
                "style=3",
                "--from",
                str(clip),
                "--size",
                "64",
                "--steps",
                "5",
                "--batch",
                "2",
                "--work-dir",
                str(work),
            ]
        )
        == 0
    )
    assert (
        main(["convert", str(clip), str(out), "--filter", "student", "--param", "model=styled"])
        == 0
    )
    frames, _, _ = decode_video(out)
    original, _, _ = decode_video(clip)
    assert len(frames) == len(original)
    changed = np.abs(frames[6].astype(int) - original[6].astype(int)).max(axis=2) > 12
    assert 0.01 < changed.mean() < 0.6  # the face changed, the rest of the frame did not


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("henshin: error:") and "Traceback" not in err and len(err.splitlines()) == 1
    )
    return err


@pytest.mark.parametrize(
    "params, expected",
    [
        (["model=nope"], "unknown model 'nope'"),
        (["model={other}"], "{other} is not a henshin student"),  # a network that is no student
        (["model=smooth", "size=128"], "was trained on 64-pixel crops, not 128"),
    ],
    ids=["unknown name", "not a student", "another size"],
)
def test_a_wrong_student_is_refused_in_one_sentence(learnt, clip, tmp_path, capsys, params, expected):
    from henshin.filters.style import bundled_model

    other = str(bundled_model("multistyle26"))
    argv = ["convert", str(clip), str(tmp_path / "o.mp4"), "--filter", "student"]
    for param in params:
        argv += ["--param", param.format(other=other)]
    assert expected.format(other=other) in _error(argv, capsys)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--filter", "style", "--param", "scope=frame"], "filters whole frames"),
        (
            ["--filter", "gnr", "--param", "random_weights=1", "--param", "morph=3"],
            "drop --param morph",
        ),
        (["--filter", "nosuch"], "unknown filter 'nosuch'"),
        (["--filter", "style", "--size", "100"], "--size expects a multiple of 16"),
        (["--filter", "style", "--minutes", "0"], "--minutes expects a number of minutes above 0"),
        (["--filter", "style", "--device", "tpu"], "--device expects cpu, cuda or cuda:N"),
    ],
)
def test_distill_errors_are_one_sentence(home, clip, capsys, args, expected):
    assert expected in _error(["distill", "some-student", "--from", str(clip), *args], capsys)


def test_distill_refuses_a_shipped_or_taken_name_and_a_missing_source(
    learnt, clip, tmp_path, capsys
):
    assert "shipped with henshin" in _error(
        ["distill", "gnr", "--filter", "style", "--from", str(clip)], capsys
    )
    assert "student smooth exists already" in _error(
        ["distill", "smooth", "--filter", "style", "--from", str(clip)], capsys
    )
    missing = tmp_path / "none.mp4"
    assert f"--from {missing} does not exist" in _error(
        ["distill", "x", "--filter", "style", "--from", str(missing)], capsys
    )


@pytest.mark.slow  # builds GANs N' Roses' full generator twice (about 20 s on two idle cores)
def test_gnr_without_a_fixed_style_is_given_one_and_says_which(home, tmp_path):
    from henshin.distill.teacher import build_teacher

    said = []
    teacher = build_teacher(
        "gnr", {"random_weights": "1", "seed": "7"}, None, tmp_path, said.append
    )
    try:
        link = teacher.chain.crop_links[0].filter
        assert link.params.style_file == str(tmp_path / "look.npy")
        assert np.allclose(link.code_for(0), link.code_for(5))  # every face the same look
    finally:
        teacher.close()
    assert any("seed 7 (face 0's look)" in line for line in said)


def test_distill_tracker_option_picks_the_tracker_that_cuts_the_pairs(home, short_clip, tmp_path):
    from henshin.cli.distill import config_from_args
    from henshin.cli.main import build_parser
    from henshin.distill.pairs import PairMaker
    from henshin.distill.teacher import build_teacher
    from henshin.engine.torch_tracking import TorchBackend

    argv = ["distill", "tracked", "--filter", TEACHER, "--from", str(short_clip)]
    assert config_from_args(build_parser().parse_args(argv)).tracker == "mediapipe"  # auto, on a CPU
    config = config_from_args(build_parser().parse_args([*argv, "--tracker", "torch"]))
    assert (config.tracker, config.tracker_device) == ("torch", "cpu")
    assert config.pairs_key() != student_config("tracked", short_clip, tmp_path).pairs_key()
    config.work_dir, config.student, config.size, config.max_pairs = tmp_path, "tiny", 64, 8
    followed = []
    real = TorchBackend.follow

    def counted(self, frames, faces):
        followed.append(len(faces))
        return real(self, frames, faces)

    teacher = build_teacher(TEACHER, {}, None, tmp_path, lambda line: None)
    (tmp_path / "pairs").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TorchBackend, "follow", counted)
        try:
            pairs = PairMaker(config, teacher, tmp_path, None).run()
        finally:
            teacher.close()
    assert pairs.train_count > 0 and sum(followed) > 0  # the torch tracker followed the face


# -- the student in live, in chains and per face ----------------------------------------------

TINT = ["--param", "tint.region=lips", "--param", "tint.color=#2040e0"]


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _convert(source: Path, out: Path, *args: str) -> np.ndarray:
    assert main(["-q", "convert", str(source), str(out), *args]) == 0
    return _read_rgb(out).astype(int)


def _student_only(source: Path, out: Path) -> np.ndarray:
    return _convert(source, out, "--filter", "student", "--param", "model=smooth")


def test_live_runs_a_student_and_the_face_changes_as_convert_changes_it(learnt, tmp_path):
    """``live --filter student`` on a still clip: every recorded frame's face is the student's, as in convert."""
    import json

    import cv2
    from conftest import decode_video, face_box, inside

    still, first = tmp_path / "still.mp4", tmp_path / "first.png"
    spec = SampleSpec(width=320, height=240, frames=30, fps=30, face_height=1.3, shift=0.0,
                      rotate_deg=0.0, scale=0.0, light=0.0, audio=False)  # fmt: skip
    write_sample(still, spec)
    source = decode_video(still)[0][0]
    cv2.imwrite(str(first), cv2.cvtColor(source, cv2.COLOR_RGB2BGR))
    expected = _student_only(first, tmp_path / "expected.png")
    record, stats = tmp_path / "live.mp4", tmp_path / "stats.json"
    argv = ["-q", "live", "--source", str(still), "--sink", "null", "--record", str(record),
            "--stats", str(stats), "--filter", "student", "--param", "model=smooth"]  # fmt: skip
    assert main(argv) == 0
    counts = json.loads(stats.read_text())
    assert counts["frames_processed"] > 0 and counts["frames_out"] > 0, counts
    face = inside(face_box(source), source.shape)
    student_change = np.abs(expected - source).max(-1)[face].mean()
    assert student_change > 8  # the smooth teacher's colour transform (measured 12.6)
    frames = decode_video(record)[0]
    settled = frames[len(frames) // 2 :]  # once the live smoothing has settled on the still face
    assert settled
    for frame in settled:
        off = np.abs(frame.astype(int) - expected).max(-1)[face].mean()
        assert off < 0.5 * student_change, (off, student_change)  # measured 2.5 against 12.6


def test_a_chain_tints_the_lips_then_the_student_restyles_the_face(learnt, face_png, tmp_path):
    """``tint+student``: the student's face, with the tinted lips gone through the student too."""
    import cv2
    from conftest import face_box, inside

    source = _read_rgb(face_png)
    alone = _student_only(face_png, tmp_path / "student.png")
    tinted = _convert(face_png, tmp_path / "tint.png", "--filter", "tint", *TINT)
    chained = _convert(face_png, tmp_path / "chain.png", "--filter", "tint+student",
                       "--param", "model=smooth", *TINT)  # fmt: skip
    lips = np.any(tinted != source, axis=2)
    near_lips = cv2.dilate(lips.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    face = inside(face_box(source), source.shape) & ~near_lips
    source = source.astype(int)
    assert lips.sum() > 50  # the tint drew the lips
    # Away from the lips the chain is the student alone; on them it is the student of blue lips.
    assert np.abs(alone - source).max(-1)[face].mean() > 6  # measured 11.1
    assert np.abs(chained - alone).max(-1)[face].mean() < 1.0  # measured 0.04
    assert np.abs(chained - alone).max(-1)[lips].mean() > 20  # measured 52


def test_face_option_gives_one_person_the_student(learnt, two_faces_png, tmp_path):
    """``--face 0=student``: the left face is exactly the student's, the right one gets ``--filter`` only."""
    source = _read_rgb(two_faces_png).astype(int)
    alone = _student_only(two_faces_png, tmp_path / "student.png")
    tinted = _convert(two_faces_png, tmp_path / "tint.png", "--filter", "tint", *TINT)
    mixed = _convert(two_faces_png, tmp_path / "mixed.png", "--filter", "tint", "--face", "0=student",
                     "--param", "model=smooth", *TINT)  # fmt: skip
    left, right = slice(0, 320), slice(320, 640)
    assert np.array_equal(mixed[:, left], alone[:, left])
    assert np.array_equal(mixed[:, right], tinted[:, right])
    changed_left = np.any(mixed[:, left] != source[:, left], axis=2).sum()
    assert changed_left > 1000  # the whole face (measured 2286), not the lips
    assert 0 < np.any(mixed[:, right] != source[:, right], axis=2).sum() < 400  # the lips only (75)


@pytest.fixture(scope="module")
def moving_frames() -> list[np.ndarray]:
    """12 frames of the astronaut moving over a still background."""
    from henshin.samples import background, motion, portrait, render

    spec = SampleSpec(width=320, height=240, frames=120, fps=24, face_height=1.3, light=0.0)
    affines, light = motion(spec)
    photo, bg = portrait(), background(spec.width, spec.height)
    return [render(spec, affines, light, i, photo, bg) for i in range(12)]


def test_strength_mixes_the_student_with_the_face(learnt, moving_frames):
    from conftest import run_offline_frames

    frames = moving_frames[:3]
    full = run_offline_frames(frames, "student", model="smooth")
    half = run_offline_frames(frames, "student", model="smooth", strength="0.5")
    for source, a, b in zip(frames, full, half, strict=True):
        whole = a.astype(float) - source
        changed = np.abs(whole).max(-1) > 12
        assert changed.mean() > 0.02
        ratio = np.abs(b.astype(float) - source)[changed].mean() / np.abs(whole)[changed].mean()
        assert 0.4 < ratio < 0.6, ratio


def test_temporal_blending_steadies_the_student(learnt, moving_frames):
    from conftest import run_offline_frames

    from henshin.engine.metrics import warping_errors

    off = run_offline_frames(moving_frames, "student", model="smooth")
    on = run_offline_frames(moving_frames, "student", model="smooth", temporal="0.8")
    area = np.maximum.reduce(
        [
            (np.abs(o.astype(int) - f).max(-1) > 0).astype(np.float32)
            for o, f in zip(off, moving_frames, strict=True)
        ]
    )
    before, after = (
        warping_errors(moving_frames, off, area),
        warping_errors(moving_frames, on, area),
    )
    assert after["ratio"] < before["ratio"] * 0.9, (before, after)


@pytest.fixture(scope="module")
def teacher_files(e4e_narrow, gnr_training_file, tmp_path_factory) -> dict[str, str]:
    """Checkpoints in the official layouts, narrowed (conftest's), and a direction for the narrow e4e's 32-d W."""
    direction = tmp_path_factory.mktemp("teachers") / "direction.pt"
    torch.save(torch.randn(1, 32, generator=torch.Generator().manual_seed(5)), direction)
    return {"e4e": str(e4e_narrow), "gnr": str(gnr_training_file), "direction": str(direction)}


@pytest.mark.parametrize(
    "chain, params",
    [
        # a latent edit: e4e's layout and its 64-px StyleGAN2, narrowed; a direction file by path
        ("latent", ["weights={e4e}", "edit={direction}:2", "ramp=0"]),
        # GANs N' Roses: its training checkpoint's layout, narrowed; one fixed look
        ("gnr", ["weights={gnr}", "seed=3"]),
        # a chain: a landmark warp, then a style
        ("warp+style", ["style.style=3"]),
    ],
)
def test_the_neural_families_and_chains_teach_a_student(
    home, short_clip, teacher_files, tmp_path, chain, params
):
    """Each teacher family runs through distill end to end: pairs made by the chain, a student stored
    whose metadata names the chain, and a convert with it changes the face."""
    from conftest import decode_video

    name = "t-" + chain.replace("+", "-")
    argv = ["distill", name, "--filter", chain, "--from", str(short_clip), "--size", "64"]
    for param in params:
        argv += ["--param", param.format(**teacher_files)]
    argv += ["--steps", "3", "--batch", "2", "--work-dir", str(tmp_path / "work")]
    assert main(argv) == 0
    meta = json.loads((Path(os.environ["HENSHIN_HOME"]) / "models" / name / "student.json").read_text())
    assert meta["teacher"]["chain"] == chain
    out = tmp_path / "out.mp4"
    assert main(["convert", str(short_clip), str(out), "--filter", "student", "--param", f"model={name}"]) == 0
    frames, _, _ = decode_video(out)
    original, _, _ = decode_video(short_clip)
    assert len(frames) == len(original)
    assert np.abs(frames[6].astype(int) - original[6].astype(int)).max() > 12  # the student changed something
