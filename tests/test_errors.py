"""Every user mistake ends in one sentence and a non-zero exit, with nothing written."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from henshin.cli.main import main
from tests.conftest import forbid


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    return code, err


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def audio_only(tmp_path) -> Path:
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100, layout="mono")
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i * 1024, Fraction(1, 44100)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_missing_input(capsys, tmp_path):
    code, err = _run(capsys, "convert", str(tmp_path / "nope.mp4"), str(tmp_path / "out.mp4"))
    assert code == 2
    assert "nope.mp4 does not exist" in _one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_a_video(capsys, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    code, err = _run(capsys, "convert", str(bad), str(tmp_path / "out.mp4"))
    assert code == 2
    assert "is not a video" in _one_sentence(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]


def test_truncated_video(capsys, clip, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = clip[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, err = _run(capsys, "convert", str(cut), str(tmp_path / "out.mp4"))
    assert code == 2
    _one_sentence(err)
    assert not (tmp_path / "out.mp4").exists()


def test_video_without_a_video_stream(capsys, audio_only, tmp_path):
    code, err = _run(capsys, "convert", str(audio_only), str(tmp_path / "out.mp4"))
    assert code == 2
    assert "has no video stream" in _one_sentence(err)


def test_output_folder_missing(capsys, clip, tmp_path):
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "no" / "such" / "out.mp4"))
    assert code == 2
    assert "does not exist" in _one_sentence(err)


def test_output_is_the_input(capsys, clip):
    before = clip[0].read_bytes()
    code, err = _run(capsys, "convert", str(clip[0]), str(clip[0]), "--overwrite")
    assert code == 2
    assert "is the input" in _one_sentence(err)
    assert clip[0].read_bytes() == before


def test_existing_output_needs_overwrite(capsys, face_png, tmp_path):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    code, err = _run(capsys, "convert", str(face_png), str(out))
    assert code == 2
    assert "--overwrite" in _one_sentence(err)
    assert out.read_bytes() == b"keep me"


def test_unknown_output_suffix(capsys, clip, tmp_path):
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "out.xyz"))
    assert code == 2
    assert "unknown suffix" in _one_sentence(err)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--filter", "sparkles"], "unknown filter 'sparkles'"),
        (["--param", "colour=red"], "unknown parameter 'colour'"),
        (["--param", "style=99"], "parameter style expects a value from 0 to 25"),
        (["--param", "strength=lots"], "parameter strength expects a number"),
        (["--param", "scope=everything"], "parameter scope expects one of face, frame"),
        (["--param", "size=250"], "multiple of 4"),
        (["--param", "blend=3:x"], "parameter blend expects STYLE:WEIGHT"),
        (["--param", "style=glitter"], "unknown style 'glitter'; expected a number from 0 to 25 or one of: ochre-wash,"),
        (["--param", "blend=glitter:0.5,3:0.5"], "unknown style 'glitter'"),
        (["--param", "nokey"], "--param expects KEY=VALUE"),
        (["--max-faces", "0"], "--max-faces expects a whole number of at least 1"),
    ],
)
def test_bad_options(capsys, clip, tmp_path, args, expect):
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "out.mp4"), *args)
    assert code == 2
    assert expect in _one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_run_leaves_no_output(clip, tmp_path, monkeypatch):
    from henshin.filters.style.filter import StyleFilter

    calls = {"n": 0}
    real = StyleFilter.process

    def failing(self, batch, faces):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("simulated crash in the filter")
        return real(self, batch, faces)

    monkeypatch.setattr(StyleFilter, "process", failing)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["-q", "convert", str(clip[0]), str(out), "--batch", "1"])
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fail the test if the source is opened or a filter built: options must be refused before that."""
    import henshin.engine.convert as convert_module

    forbid(monkeypatch, "work started although an option was bad", (convert_module, "open_source"),
           (convert_module, "FilterGraph"))


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--preset", "ludicrous"], "--preset expects one of ultrafast"),
        (["--crf", "-5"], "--crf expects a whole number from 0"),
        (["--crf", "99"], "--crf expects a whole number from 0"),
        (["--device", "tpu"], "--device expects cpu, cuda or cuda:N"),
        (["--device", "cpu", "--precision", "fp16"], "--precision fp16 needs a CUDA device"),
        (["--runtime", "onnxruntime", "--precision", "bf16"], "ONNX Runtime runs networks in fp32"),
        (["--runtime", "tensorrt", "--device", "cpu"], "TensorRT runs on a CUDA GPU only"),
    ],
)
def test_bad_encoder_and_runtime_options_are_refused_before_work(capsys, clip, tmp_path, nothing_loaded, args,
                                                                 expect):
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "out.mp4"), *args)
    assert code == 2
    assert expect in _one_sentence(err)
    assert list(tmp_path.iterdir()) == []


def test_a_device_this_machine_lacks_is_refused_before_work(capsys, clip, tmp_path, nothing_loaded):
    from henshin.runtimes import cuda_available

    if cuda_available():
        import torch

        device, expect = f"cuda:{torch.cuda.device_count()}", "pick one of them"
    else:
        device, expect = "cuda", "torch sees none on this machine"
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "out.mp4"), "--device", device)
    assert code == 2 and expect in _one_sentence(err)


def test_binary_preset_file_is_one_sentence(capsys, clip, tmp_path):
    preset = tmp_path / "look.toml"
    preset.write_bytes(b"\x00\x01\xff\xfe")
    code, err = _run(capsys, "convert", str(clip[0]), str(tmp_path / "out.mp4"), "--filter", "warp",
                     "--param", f"preset={preset}")
    assert code == 2 and "is not a text file" in _one_sentence(err)
