"""--tracker-precision: parsed, refused for the mediapipe tracker before any work, and carried
to the torch tracker's networks by convert, batch (and so the Ray workers' jobs), live and distill."""

import pytest

pytest.importorskip("mediapipe")
torch = pytest.importorskip("torch")

from henshin.cli.main import build_parser, main  # noqa: E402
from henshin.cli.options import resolve_tracker_precision  # noqa: E402
from henshin.engine.torch_tracking import TorchBackend  # noqa: E402
from henshin.errors import OptionError  # noqa: E402


def test_auto_is_fp16_on_a_cuda_device_and_fp32_on_the_cpu():
    assert resolve_tracker_precision("auto", "torch", "cuda") == "fp16"
    assert resolve_tracker_precision("auto", "torch", "cuda:1") == "fp16"
    assert resolve_tracker_precision("auto", "torch", "cpu") == "fp32"
    assert resolve_tracker_precision("bf16", "torch", "cpu") == "bf16"
    assert resolve_tracker_precision("fp32", "torch", "cuda") == "fp32"
    assert resolve_tracker_precision("auto", "mediapipe", "cpu") == "fp32"


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "{clip}", "{out}.mp4"],
        ["batch", "--in-dir", "{folder}", "--out-dir", "{out}"],
        ["live", "--source", "{clip}", "--sink", "null", "--max-frames", "2"],
        ["distill", "precise", "--filter", "tint", "--from", "{clip}"],
    ],
)
def test_a_precision_for_the_mediapipe_tracker_is_one_sentence_before_any_work(
    command, clip, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    folder = clip[0].parent
    argv = [a.format(clip=clip[0], out=tmp_path / "out", folder=folder) for a in command]
    code = main(["-q", *argv, "--tracker", "mediapipe", "--tracker-precision", "fp16"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("henshin:")]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert "--tracker-precision fp16 is for the torch tracker" in lines[0]
    assert not list(tmp_path.glob("out*"))  # nothing written


def test_a_precision_henshin_does_not_know_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "a.mp4", "b.mp4", "--tracker-precision", "int8"])
    assert "--tracker-precision" in capsys.readouterr().err
    with pytest.raises(OptionError, match="expects one of auto, fp32, fp16, bf16"):
        resolve_tracker_precision("fp64", "torch", "cpu")


def _recording(monkeypatch):
    """TorchBackend made to record the precision it is opened with."""
    seen = []
    real = TorchBackend.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        seen.append(self.nets.dtype)

    monkeypatch.setattr(TorchBackend, "__init__", init)
    return seen


def test_convert_runs_the_torch_tracker_in_the_precision_asked_for(face_png, tmp_path, monkeypatch):
    seen = _recording(monkeypatch)
    out = tmp_path / "out.png"
    argv = ["-q", "convert", str(face_png), str(out), "--param", "strength=0"]
    assert main([*argv, "--tracker", "torch", "--tracker-precision", "bf16"]) == 0
    assert seen == [torch.bfloat16]
    out.unlink()
    assert main([*argv, "--tracker", "torch"]) == 0  # auto on the CPU
    assert seen == [torch.bfloat16, torch.float32]


def test_batch_jobs_and_distill_carry_the_precision(clip, tmp_path, monkeypatch):
    from henshin.cli.convert import job_from_args
    from henshin.cli.distill import config_from_args

    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    precise = ["--tracker", "torch", "--tracker-precision", "fp16"]
    args = build_parser().parse_args(
        ["batch", "--in-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"), *precise]
    )
    # the job is what the Ray workers receive: its tracker config opens their backend
    job = job_from_args(args, tmp_path / "a.mp4", tmp_path / "b.mp4")
    assert (job.tracker.kind, job.tracker.dtype) == ("torch", "fp16")
    argv = ["distill", "precise", "--filter", "tint", "--from", str(clip[0])]
    config = config_from_args(build_parser().parse_args([*argv, *precise]))
    assert config.tracker_dtype == "fp16"
    plain = config_from_args(build_parser().parse_args([*argv, "--tracker", "torch"]))
    assert plain.tracker_dtype == "fp32" and plain.pairs_key() != config.pairs_key()
