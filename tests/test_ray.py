"""Distributed conversion on a local Ray with 2 CPUs: the same output as a local run, resume, retry, batch."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from henshin.cli.main import main  # noqa: E402 - after the skip: these tests need Ray
from henshin.engine.convert import ConvertJob  # noqa: E402
from henshin.engine.distributed.plan import plan_file  # noqa: E402
from henshin.engine.distributed.run import DistributedJob, run_distributed  # noqa: E402
from henshin.engine.distributed.scheduler import RayPool  # noqa: E402
from henshin.engine.distributed.workdir import WorkFolder  # noqa: E402
from henshin.engine.distributed.worker import SegmentConverter  # noqa: E402
from henshin.engine.offline import OfflineConfig, run_offline  # noqa: E402
from henshin.engine.sources import VideoSource  # noqa: E402
from tests.conftest import CLIP, KeepSink, audio_seconds, decode_video, stages_for  # noqa: E402
from tests.segments import clip_of_kind, decode_audio, frame_diffs, video_packets  # noqa: E402

SEGMENT_S = "0.5"  # 12 frames of the 24 fps sample clip: 3 segments


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray of 2 CPUs for the module (started once, a few seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    # Test doubles defined here travel to the workers by value (the workers do not import the tests).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


# -- the same output as a local run -------------------------------------------------------------


@pytest.fixture(scope="module")
def both(clip, tmp_path_factory):
    """The clip converted locally and with --ray on 2 workers, same settings; the stats of the Ray run."""
    out = tmp_path_factory.mktemp("ray")
    common = ["--param", "style=3"]
    assert main(["-q", "convert", str(clip[0]), str(out / "local.mp4"), *common]) == 0
    assert main(["-q", "convert", str(clip[0]), str(out / "ray.mp4"), *common, "--ray", "--workers", "2",
                 "--segment-seconds", SEGMENT_S, "--work-dir", str(out / "work"), "--stats",
                 str(out / "stats.json")]) == 0
    return out / "local.mp4", out / "ray.mp4", json.loads((out / "stats.json").read_text())


def test_ray_keeps_the_frame_count_timestamps_and_audio_of_a_local_run(clip, both):
    local, distributed, _ = both
    frames, pts, time_base = decode_video(distributed)
    local_frames, local_pts, local_time_base = decode_video(local)
    assert len(frames) == len(local_frames) == CLIP.frames
    assert [p * time_base for p in pts] == [p * local_time_base for p in local_pts]
    assert audio_seconds(distributed) == pytest.approx(audio_seconds(local), abs=1e-6)
    assert audio_seconds(distributed) == pytest.approx(audio_seconds(clip[0]), abs=1e-6)


def test_ray_frames_match_the_local_run_up_to_encoder_noise_with_no_seam(clip, both):
    local, distributed, _ = both
    # The pictures before encoding, from a local run of the same stages.
    stages = stages_for("style", 4, style="3")
    pictures = KeepSink()
    try:
        run_offline(VideoSource(clip[0]), stages, pictures, OfflineConfig(progress=False))
    finally:
        stages.close()
        stages.graph.close()
    source, _, _ = decode_video(clip[0])
    assert min(frame_diffs(pictures.images, source)) > 1.5  # the filter did change the face
    local_error = frame_diffs(decode_video(local)[0], pictures.images)  # the encoder's own noise (crf 18)
    ray_error = frame_diffs(decode_video(distributed)[0], pictures.images)
    # 8-bit levels, mean over the frame. A segment's last frames get a little less of the encoder's
    # care than mid-stream ones (up to 0.5 here), its first ones more (an IDR frame); on average none.
    excess = [r - lo for r, lo in zip(ray_error, local_error, strict=True)]
    assert max(excess) < 1.0 and float(np.mean(excess)) < 0.25, (ray_error, local_error)
    for edge in (12, 24):  # the first frames of segments 2 and 3, and the last ones of 1 and 2
        assert max(excess[edge - 2:edge + 2]) < 1.0


def test_ray_joins_the_segments_by_stream_copy_in_order(both):
    _, distributed, stats = both
    packets = video_packets(distributed)
    dts = [d for _, d, _ in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))  # monotonic with B-frames
    assert any(p != d for p, d, _ in packets)  # (there are B-frames)
    # Each segment's own IDR frame is still there: nothing was re-encoded.
    assert sorted(p for p, _, key in packets if key) == [0, 12 * 512, 24 * 512]
    assert stats["segments_total"] == stats["segments_converted"] == 3


def test_ray_stats_have_per_segment_and_per_worker_figures(both):
    _, _, stats = both
    assert stats["pool"]["kind"] == "ray" and stats["pool"]["workers"] == 2
    assert [row["frames"] for row in stats["segments"]] == [12, 12, 12]
    assert all(row["seconds"] > 0 and row["worker"] and row["attempts"] == 1 for row in stats["segments"])
    workers = stats["workers"]
    assert sum(w["segments"] for w in workers.values()) == 3 and sum(w["frames"] for w in workers.values()) == 36
    assert all(w["fps"] > 0 for w in workers.values())
    assert stats["planning_s"] >= 0 and stats["join_s"] > 0 and stats["frames_out"] == 36


# -- a run killed mid-way, resumed; a segment that fails once -----------------------------------


class FailsOnce(SegmentConverter):
    """Runs out of memory on the first attempt at segment 3, wherever it runs (a marker file remembers it)."""

    def __init__(self, settings, worker=None, marker: Path | None = None):
        super().__init__(settings, worker)
        self.marker = marker

    def convert(self, segment, progress=None):
        if segment.index == 2 and not self.marker.exists():
            self.marker.touch()
            raise MemoryError("injected failure")
        return super().convert(segment, progress)


@pytest.fixture(scope="module")
def killed_then_resumed(clip, tmp_path_factory):
    """A run stopped (Ctrl-C in the driver) once its first segment is kept, then run again."""
    out = tmp_path_factory.mktemp("resume")
    # tint: a filter with no network, so the workers start sooner (the network path is tested above).
    settings = ConvertJob(Path(), Path(), filter="tint", scheduling=OfflineConfig(progress=False))
    job = DistributedJob([(clip[0], out / "out.mp4")], settings, segment_seconds=float(SEGMENT_S),
                         work_root=out / "work", progress=False)
    store = WorkFolder.store

    def store_then_stop(self, *args):
        store(self, *args)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WorkFolder, "store", store_then_stop)
        with pytest.raises(KeyboardInterrupt):
            run_distributed(job, lambda: RayPool(settings, workers=2))
    kept = len(list((out / "work").glob("*/segment-*.mp4")))
    assert not job.files[0][1].exists()  # no output from the stopped run
    flaky = functools.partial(FailsOnce, marker=out / "failed-once")
    stats = run_distributed(job, lambda: RayPool(settings, workers=2, converter=flaky))
    return job, kept, stats.to_json(), out / "failed-once"


def test_a_killed_run_resumes_converting_only_the_missing_segments(clip, killed_then_resumed):
    job, kept, stats, _ = killed_then_resumed
    total = len(plan_file(clip[0], float(SEGMENT_S)).segments)
    assert kept == 1  # the run stopped right after keeping its first segment
    assert stats["segments_reused"] == kept
    assert stats["segments_converted"] == total - kept
    assert len([r for r in stats["segments"] if not r["reused"]]) == total - kept
    frames, pts, _ = decode_video(job.files[0][1])
    _, src_pts, _ = decode_video(clip[0])
    assert len(frames) == CLIP.frames and pts == src_pts


def test_a_segment_that_fails_once_is_retried_and_the_output_is_complete(killed_then_resumed):
    job, _, stats, marker = killed_then_resumed
    assert marker.exists()  # the failure happened
    (row,) = [r for r in stats["segments"] if r["index"] == 2]
    assert row["attempts"] == 2 and not row["reused"]
    assert row["retries"] == ["MemoryError: injected failure"]  # out of memory: the one raised error retried
    assert len(decode_video(job.files[0][1])[0]) == CLIP.frames


# -- batch ----------------------------------------------------------------------------------------


def test_batch_converts_every_file_of_a_manifest_through_one_pool(clip, faceless_clip, tmp_path):
    shutil.copy(clip[0], tmp_path / "face.mp4")
    shutil.copy(faceless_clip, tmp_path / "empty clip.mp4")
    manifest = tmp_path / "list.txt"
    manifest.write_text("face.mp4 out/face.mp4\n'empty clip.mp4' out/empty.mp4\n")
    (tmp_path / "out").mkdir()
    stats_file = tmp_path / "stats.json"
    assert main(["-q", "batch", str(manifest), "--filter", "tint", "--ray", "--workers", "2", "--segment-seconds", SEGMENT_S,
                 "--work-dir", str(tmp_path / "work"), "--stats", str(stats_file)]) == 0
    assert len(decode_video(tmp_path / "out" / "face.mp4")[0]) == CLIP.frames
    assert len(decode_video(tmp_path / "out" / "empty.mp4")[0]) == 8
    stats = json.loads(stats_file.read_text())
    assert {Path(f["output"]).name for f in stats["files"]} == {"face.mp4", "empty.mp4"}
    assert {Path(r["input"]).name for r in stats["segments"]} == {"face.mp4", "empty clip.mp4"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["empty.mp4", "face.mp4"]  # no partial files


# -- placement --------------------------------------------------------------------------------------


def test_more_workers_than_the_cluster_can_hold_is_refused_before_any_actor_starts():
    from henshin.errors import OptionError

    with pytest.raises(OptionError, match="--workers 3 asks for more workers than the cluster's 2 CPUs"):
        RayPool(ConvertJob(Path(), Path()), workers=3)


def test_each_actor_gets_its_share_of_the_machine():
    from henshin.engine.distributed.scheduler import _per_actor
    from henshin.runtimes import RuntimeOptions

    job = ConvertJob(Path(), Path(), runtime=RuntimeOptions(device="cuda:1"))
    assert _per_actor(job, {"num_gpus": 1, "num_cpus": 1}).runtime.device == "cuda"  # its one visible GPU
    assert _per_actor(ConvertJob(Path(), Path()), {"num_cpus": 2}).runtime.threads == 2  # not every core


# -- real files: codecs whose decoders do not land where a seek asks -----------------------------------

LOSSLESS = ["--filter", "tint", "--crf", "0"]  # no face in these clips: every frame passes, encoded losslessly


@pytest.fixture(scope="module")
def local_outputs(tmp_path_factory):
    """Each kind of clip, and its local convert (lossless, so a frame off or out of place shows exactly)."""
    out = tmp_path_factory.mktemp("codecs")
    cache: dict[str, tuple[Path, Path]] = {}

    def get(kind: str) -> tuple[Path, Path]:
        if kind not in cache:
            folder = out / kind
            folder.mkdir()
            clip = clip_of_kind(kind, folder)
            assert main(["-q", "convert", str(clip), str(folder / "local.mp4"), *LOSSLESS]) == 0
            cache[kind] = clip, folder / "local.mp4"
        return cache[kind]

    return get


def assert_same_video(got: Path, expected: Path) -> None:
    """The same frames (exactly), at the same times, with the same audio."""
    frames, pts, time_base = decode_video(got)
    want, want_pts, want_base = decode_video(expected)
    assert len(frames) == len(want)
    assert [float(p * time_base) for p in pts] == [float(p * want_base) for p in want_pts]
    wrong = [i for i, (a, b) in enumerate(zip(frames, want, strict=True)) if not np.array_equal(a, b)]
    assert not wrong, f"frames {wrong} differ from the local convert"
    assert np.array_equal(decode_audio(got), decode_audio(expected))


@pytest.mark.parametrize("seconds, workers", [
    ("0.15", 2),  # 3-4 frames: shorter than every clip's GOP, so most segments seek into a GOP
    ("0.5", 1),  # about a GOP
])
def test_ray_output_equals_the_local_convert_frame_for_frame(local_outputs, tmp_path, seconds, workers):
    # All kinds in one batch: one pool (Ray's actors take seconds to start), every file checked.
    kinds = ["mpeg4-packed", "mpeg4-avi", "h264-open-gop", "h264-cut", "vp9-mkv"]
    manifest = tmp_path / "list.txt"
    manifest.write_text("".join(f"{local_outputs(k)[0]} {tmp_path / k}.mp4\n" for k in kinds))
    assert main(["-q", "batch", str(manifest), *LOSSLESS, "--ray", "--workers", str(workers),
                 "--segment-seconds", seconds, "--work-dir", str(tmp_path / "work")]) == 0
    for kind in kinds:
        clip, local = local_outputs(kind)
        assert len(plan_file(clip, float(seconds)).segments) > 2
        assert_same_video(tmp_path / f"{kind}.mp4", local)


class Counts(SegmentConverter):
    """Writes a line to ``attempts`` for each attempt at segment 2, and ``fail`` decides how that attempt ends."""

    def __init__(self, settings, worker=None, attempts: Path | None = None, fail=None):
        super().__init__(settings, worker)
        self.attempts, self.fail = attempts, fail

    def convert(self, segment, progress=None):
        if segment.index != 1:
            return super().convert(segment, progress)
        with open(self.attempts, "a") as f:
            f.write(f"{os.getpid()}\n")
        return self.fail(self, segment, progress)


def bad_input(converter, segment, progress):
    from henshin.errors import BadInputError

    raise BadInputError(f"{segment.name}: injected bad input; give another file.")


def killed_the_first_time(converter, segment, progress):
    """SIGKILL this worker's process half-way through its first attempt (a lost worker, an OOM kill)."""
    first = len(converter.attempts.read_text().splitlines()) == 1

    def report(frames):
        if first and frames == segment.frames // 2:
            os.kill(os.getpid(), signal.SIGKILL)
        if progress is not None:
            progress(frames)

    return SegmentConverter.convert(converter, segment, report)


def run_with(clip, out, attempts, fail, workers=2):
    settings = ConvertJob(Path(), Path(), filter="tint", crf=0, scheduling=OfflineConfig(progress=False))
    job = DistributedJob([(clip, out)], settings, segment_seconds=0.3, work_root=out.parent / "work", progress=False)
    converter = functools.partial(Counts, attempts=attempts, fail=fail)
    return run_distributed(job, lambda: RayPool(settings, workers=workers, converter=converter,
                                                log=out.parent / "ray.log"))


def test_an_input_error_fails_the_run_at_once_with_its_sentence(local_outputs, tmp_path):
    from henshin.errors import BadInputError

    clip, _ = local_outputs("h264-open-gop")
    attempts = tmp_path / "attempts"
    with pytest.raises(BadInputError, match="injected bad input; give another file") as failed:
        run_with(clip, tmp_path / "out.mp4", attempts, bad_input)
    assert len(attempts.read_text().splitlines()) == 1  # once, not three times
    assert str(failed.value).count("segment 2/") == 1  # the sentence as the worker said it
    assert not (tmp_path / "out.mp4").exists()


def test_a_worker_killed_mid_segment_is_replaced_and_the_output_is_the_same(local_outputs, tmp_path, caplog):
    from henshin.engine.distributed.pool import LOST

    clip, local = local_outputs("h264-open-gop")
    attempts = tmp_path / "attempts"
    stats = run_with(clip, tmp_path / "out.mp4", attempts, killed_the_first_time).to_json()
    pids = attempts.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # the segment ran again, in another process
    (row,) = [r for r in stats["segments"] if r["index"] == 1]
    assert row["attempts"] == 2 and row["retries"] == [LOST]
    assert_same_video(tmp_path / "out.mp4", local)
    assert "segment 2 of" in caplog.text and "its worker was lost" in caplog.text  # the note says which, and why
    assert f"Ray's log of this run is in {tmp_path / 'ray.log'}" in caplog.text
