"""Distributed conversion without Ray: planning, the segment worker, joining, resuming, batch manifests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from henshin.cli.main import main
from henshin.engine.convert import ConvertJob
from henshin.engine.distributed.plan import plan_file
from henshin.engine.distributed.pool import SerialPool
from henshin.engine.distributed.run import DistributedJob, SegmentError, run_distributed
from henshin.engine.distributed.workdir import WorkFolder, work_key
from henshin.engine.distributed.worker import SegmentConverter, SegmentSource, settings_key
from henshin.engine.offline import OfflineConfig, run_offline
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.sources import VideoSource
from henshin.engine.stages import FaceStages
from tests.conftest import CLIP, KeepSink, audio_seconds, decode_video, forbid
from tests.segments import clip_of_kind, jittered_clip, packed_avi, reencode, video_packets

HENSHIN = Path(__file__).resolve().parent.parent / "henshin"


@pytest.fixture(scope="module")
def keyed_clip(clip, tmp_path_factory) -> Path:
    """The sample clip with a keyframe every 8 frames and B-frames."""
    return reencode(clip[0], tmp_path_factory.mktemp("keyed") / "keyed.mp4", keyint=8)


def settings(**kw) -> ConvertJob:
    return ConvertJob(Path(), Path(), scheduling=OfflineConfig(progress=False), **kw)


# -- planning ------------------------------------------------------------------------------------


def test_segments_start_on_keyframes_and_cover_every_frame_once(keyed_clip):
    plan = plan_file(keyed_clip, 0.5)
    keys = {pts for pts, _, key in video_packets(keyed_clip) if key}
    assert plan.frames == CLIP.frames and plan.keyframes == len(keys) == 5
    assert len(plan.segments) >= 2
    assert all(s.start_pts in keys for s in plan.segments)
    assert sum(s.frames for s in plan.segments) == CLIP.frames
    for a, b in zip(plan.segments, plan.segments[1:], strict=False):
        assert a.end_pts == b.start_pts and a.first + a.frames == b.first
    assert plan.segments[-1].end_pts is None and plan.segments[-1].stop_pts is None


def test_a_long_gop_is_split_and_its_worker_seeks_back_to_the_keyframe(clip):
    plan = plan_file(clip[0], 0.5, warmup=8, lookahead=4)  # the clip has one keyframe: 36 frames, one GOP
    assert plan.keyframes == 1
    assert [(s.first, s.frames) for s in plan.segments] == [(0, 12), (12, 12), (24, 12)]
    assert [s.warm_frames for s in plan.segments] == [0, 8, 8]
    assert [s.ahead_frames for s in plan.segments] == [4, 4, 0]
    assert all(s.seek_ts is None for s in plan.segments)  # the only keyframe is the first frame


def test_a_segment_decodes_its_warm_up_and_look_ahead_with_the_files_frame_numbers(keyed_clip):
    _, pts, _ = decode_video(keyed_clip)
    whole = VideoSource(keyed_clip)  # the pictures a local run decodes
    frames = [f.image for f in whole]
    whole.close()
    segment = plan_file(keyed_clip, 0.5, warmup=3, lookahead=3).segments[1]
    assert segment.seek_ts is not None  # decoding starts at a keyframe after the file's start
    source = SegmentSource(segment)
    try:
        got = list(source)
    finally:
        source.close()
    first = segment.first - segment.warm_frames
    assert [f.index for f in got] == list(range(first, segment.first + segment.frames + segment.ahead_frames))
    assert [f.pts for f in got] == pts[first:first + len(got)]
    assert all(np.array_equal(f.image, frames[f.index]) for f in got)
    assert sum(segment.writes(f.pts) for f in got) == segment.frames


# -- real files: where a decoder lands after a seek ----------------------------------------------------

KINDS = ["mpeg4-packed", "mpeg4-avi", "h264-open-gop", "h264-cut", "vp9-mkv"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """One clip of each kind, made once."""
    folder = tmp_path_factory.mktemp("kinds")
    return {kind: clip_of_kind(kind, folder) for kind in KINDS}


def whole(path: Path) -> list:
    source = VideoSource(path)
    try:
        return [(f.index, f.pts, f.image) for f in source]
    finally:
        source.close()


def segment_frames(segment) -> list:
    source = SegmentSource(segment)
    try:
        return [(f.index, f.pts, f.image) for f in source if segment.writes(f.pts)]
    finally:
        source.close()


@pytest.mark.parametrize("kind", KINDS)
def test_every_segment_decodes_the_frames_of_a_whole_decode_at_any_length(clips, kind):
    # Segments shorter than a GOP, about a GOP, and several GOPs; warm-up as in a run (8 frames).
    reference = whole(clips[kind])
    for seconds in (0.1, 0.3, 1.0):
        segments = plan_file(clips[kind], seconds).segments
        joined = [frame for s in segments for frame in segment_frames(s)]
        assert [(i, p) for i, p, _ in joined] == [(i, p) for i, p, _ in reference], (kind, seconds)
        assert all(np.array_equal(a[2], b[2]) for a, b in zip(joined, reference, strict=True)), (kind, seconds)
        assert any(s.seek_ts is not None for s in segments) or seconds == 1.0  # seeks were tried


def test_packed_b_frames_get_their_timestamps_in_presentation_order(clips):
    # The decoder hands a packed B-frame back with its P-frame's timestamp (pts 3, 5, 4, 7, 6...);
    # frames keep the order they are shown in, and take the timestamps in the order they are shown.
    import av

    path = clips["mpeg4-packed"]
    with av.open(str(path)) as container:
        raw = [f.pts for f in container.decode(container.streams.video[0])]
    assert raw != sorted(raw)  # (the file does pack its B-frames)
    assert [p for _, p, _ in whole(path)] == sorted(raw) == sorted(p for p, _, _ in video_packets(path))


def test_a_recording_cut_inside_an_open_gop_is_planned_from_its_first_decodable_frame(clips):
    # Its first packets are frames shown before its first keyframe that refer to frames cut away.
    path = clips["h264-cut"]
    packets, frames = video_packets(path), whole(path)
    assert len(frames) < len(packets)  # (the decoder does drop them)
    plan = plan_file(path, 0.3)
    assert plan.frames == len(frames) and plan.segments[0].start_pts == frames[0][1]


def test_a_segment_the_decoder_cannot_reach_is_merged_into_the_one_before(clips):
    from henshin.engine.distributed.plan import plan_segments, read_packets

    packets = read_packets(clips["h264-open-gop"])
    cut = plan_segments(packets, "clip", 0.3, warmup=2, lookahead=2)
    unreachable = cut[3].start_pts
    merged = plan_segments(packets, "clip", 0.3, warmup=2, lookahead=2,
                           reachable=lambda s: s.start_pts != unreachable)
    assert len(merged) == len(cut) - 1
    assert [(s.first, s.frames) for s in merged[:2]] == [(s.first, s.frames) for s in cut[:2]]
    assert (merged[2].first, merged[2].frames) == (cut[2].first, cut[2].frames + cut[3].frames)
    assert [s.index for s in merged] == list(range(len(merged))) and all(s.count == len(merged) for s in merged)


def test_a_file_that_cannot_seek_is_planned_from_its_start_and_still_decodes_right(tmp_path):
    # An AVI with PCM audio in which FFmpeg refuses to seek: no segment may rely on a seek.
    from fractions import Fraction

    path = packed_avi(tmp_path / "with-audio.avi", 48, Fraction(25), frozenset({0, 1, 21, 34}), audio=True)
    segments = plan_file(path, 0.2).segments
    assert all(s.seek_ts is None for s in segments)
    joined = [frame for s in segments for frame in segment_frames(s)]
    reference = whole(path)
    assert [(i, p) for i, p, _ in joined] == [(i, p) for i, p, _ in reference]
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(joined, reference, strict=True))


# -- the work folder ---------------------------------------------------------------------------------


def test_only_a_complete_segment_counts_as_finished(tmp_path):
    folder = WorkFolder(tmp_path, "key")
    folder.store(0, b"video", {"frames": 3})
    assert folder.finished(0) and folder.record(0) == {"frames": 3}
    folder.video(1).write_bytes(b"half")  # a video without its record
    (folder.path / "segment-00002.json").write_text("{}")  # a record without its video
    (folder.path / ".segment-00003.mp4.x.partial").write_bytes(b"half")
    assert not folder.finished(1) and not folder.finished(2) and not folder.finished(3)


def test_the_work_key_changes_with_the_input_the_settings_and_the_cut():
    base = work_key("a" * 64, settings_key(settings()), {"segment_seconds": 10})
    assert base == work_key("a" * 64, settings_key(settings()), {"segment_seconds": 10})
    assert base != work_key("b" * 64, settings_key(settings()), {"segment_seconds": 10})
    assert base != work_key("a" * 64, settings_key(settings(params={"style": "3"})), {"segment_seconds": 10})
    assert base != work_key("a" * 64, settings_key(settings(crf=20)), {"segment_seconds": 10})
    assert base != work_key("a" * 64, settings_key(settings()), {"segment_seconds": 5})


# -- alignment at the seams -------------------------------------------------------------------------


class QuadStages(FaceStages):
    """The stages, recording each frame's smoothed face square."""

    def __init__(self, *args):
        super().__init__(*args)
        self.quads: dict[int, np.ndarray] = {}

    def composite(self, work):
        if work.jobs:
            self.quads[work.frame.index] = work.jobs[0].face.quad.copy()
        return super().composite(work)


def test_alignment_is_continuous_across_segment_edges(tmp_path):
    # Landmarks that jitter, so smoothing matters: with warm-up and look-ahead every frame's face
    # square is where the whole-video run put it.
    path = jittered_clip(tmp_path / "shaky.mp4")
    converter = SegmentConverter(settings())
    try:
        def quads(source) -> dict[int, np.ndarray]:
            stages = QuadStages(converter.graph, CentredSmoother(4), None, 24.0)
            try:
                run_offline(source, stages, KeepSink(), OfflineConfig(progress=False))
            finally:
                stages.close()
                source.close()
            return stages.quads

        local = quads(VideoSource(path))
        segments = plan_file(path, 0.5, warmup=8, lookahead=4).segments
        joined: dict[int, np.ndarray] = {}
        for segment in segments:
            joined |= {i: q for i, q in quads(SegmentSource(segment)).items()
                       if segment.first <= i < segment.first + segment.frames}
    finally:
        converter.close()
    assert len(segments) == 3
    assert sorted(joined) == sorted(local) == list(range(CLIP.frames))
    error = [float(np.abs(joined[i] - local[i]).max()) for i in range(CLIP.frames)]
    # The tracker follows each face from its own history, so a run that starts elsewhere differs by
    # tracking noise (0.1-0.6 px); without warm-up or look-ahead the frames at the edges are off by 1-2 px.
    edges = [error[i] for s in segments[1:] for i in range(s.first - 4, s.first + 4)]
    assert max(edges) < 1.0 and np.mean(edges) < 0.3, error  # pixels, on a face square about 200 px across
    assert max(error) < 1.0, error


# -- a run that fails, then resumes -------------------------------------------------------------------


class FailingConverter(SegmentConverter):
    """Runs out of memory on every attempt at the second segment."""

    def convert(self, segment, progress=None):
        if segment.index == 1:
            raise MemoryError("injected failure")
        return super().convert(segment, progress)


@pytest.fixture(scope="module")
def failed_then_resumed(clip, tmp_path_factory):
    """A run whose second segment keeps failing, then the same run again with nothing failing."""
    out_dir = tmp_path_factory.mktemp("resume")
    job = DistributedJob([(clip[0], out_dir / "out.mp4")], settings(), segment_seconds=0.5,
                         work_root=out_dir / "work", progress=False)
    with pytest.raises(SegmentError) as failed:
        run_distributed(job, lambda: SerialPool(job.settings, attempts=2, converter=FailingConverter))
    kept = sorted(p.name for p in (out_dir / "work").glob("*/segment-*.mp4"))
    first_output_exists = job.files[0][1].exists()
    stats = run_distributed(job, lambda: SerialPool(job.settings))
    return job, str(failed.value), kept, first_output_exists, stats


def test_a_segment_that_keeps_failing_names_the_segment_the_input_and_the_error(clip, failed_then_resumed):
    _, message, kept, first_output_exists, _ = failed_then_resumed
    assert f"segment 2/3 of {clip[0]}" in message and "frames 12-23" in message
    assert "failed 2 times" in message and "MemoryError: injected failure" in message
    assert kept == ["segment-00000.mp4", "segment-00002.mp4"]  # the others were still converted, and kept
    assert not first_output_exists


def test_a_rerun_converts_only_the_missing_segments(clip, failed_then_resumed):
    job, _, _, _, stats = failed_then_resumed
    doc = stats.to_json()
    assert doc["segments_total"] == 3 and doc["segments_converted"] == 1 and doc["segments_reused"] == 2
    assert [row["index"] for row in doc["segments"] if not row["reused"]] == [1]
    frames, pts, _ = decode_video(job.files[0][1])
    _, src_pts, _ = decode_video(clip[0])
    assert len(frames) == CLIP.frames and pts == src_pts
    assert audio_seconds(job.files[0][1]) == pytest.approx(audio_seconds(clip[0]), abs=1e-6)
    assert not list((job.work_root).glob("*/segment-*"))  # the work folder goes once the output is whole


def test_joined_segments_keep_decode_order_and_start_on_keyframes(failed_then_resumed):
    job, *_ = failed_then_resumed
    packets = video_packets(job.files[0][1])
    dts = [d for _, d, _ in packets]
    assert all(b > a for a, b in zip(dts, dts[1:], strict=False))
    assert all(d <= p for p, d, _ in packets)
    keys = sorted(p for p, _, key in packets if key)
    assert keys == [0, 12 * 512, 24 * 512]  # one IDR at each segment's start (time base 1/12288 at 24 fps)


# -- batch manifests ----------------------------------------------------------------------------------


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail the test if any conversion starts."""
    import henshin.engine.convert as convert_module
    import henshin.engine.distributed.run as run_module

    forbid(monkeypatch, "a conversion started", (convert_module, "convert"), (run_module, "_prepare"))


@pytest.mark.parametrize("line, expected", [
    ("missing.mp4 b.mp4", "line 3 of"),
    ("face.mp4 a.mp4", "is also the output of line 2"),
    ("face.mp4 face.mp4", "choose a different output path"),
    ("face.mp4 other.mp4 extra", "expected INPUT OUTPUT"),
])
def test_a_manifest_with_a_bad_line_is_refused_before_any_work(clip, tmp_path, capsys, no_conversion, line, expected):
    import shutil

    shutil.copy(clip[0], tmp_path / "face.mp4")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# two files\nface.mp4 a.mp4\n{line}\n")
    for ray in ([], ["--ray"]):
        assert main(["-q", "batch", str(manifest), *ray]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.mp4", "list.txt"]


def test_an_output_that_is_another_lines_input_is_refused(clip, tmp_path, capsys, no_conversion):
    import shutil

    for name in ("a.mp4", "b.mp4"):
        shutil.copy(clip[0], tmp_path / name)
    manifest = tmp_path / "list.txt"
    manifest.write_text("a.mp4 out.mp4\nb.mp4 a.mp4\n")
    assert main(["-q", "batch", str(manifest), "--overwrite"]) == 2
    assert "is the input of line 1" in capsys.readouterr().err


def test_in_dir_and_out_dir_pair_each_video_with_the_same_name(tmp_path):
    from henshin.cli.batch import from_dirs

    (tmp_path / "in").mkdir()
    for name in ("b.mov", "a.mp4", "c.webm", "notes.txt"):
        (tmp_path / "in" / name).write_bytes(b"")
    rows = from_dirs(tmp_path / "in", tmp_path / "out")
    assert [(src.name, dst.name) for _, src, dst in rows] == [("a.mp4", "a.mp4"), ("b.mov", "b.mov"),
                                                                ("c.webm", "c.mp4")]


# -- options and the optional dependency -----------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["--address", "auto"], "add --ray"),
    (["--verbose"], "--verbose applies to a distributed conversion; add --ray"),
    (["--ray", "--workers", "0"], "--workers expects"),
    (["--ray", "--segment-seconds", "0"], "--segment-seconds expects"),
    (["--ray", "--face", "0=tint"], "drop --face"),
])
def test_ray_options_are_checked_before_any_work(clip, tmp_path, capsys, no_conversion, args, expected):
    assert main(["-q", "convert", str(clip[0]), str(tmp_path / "o.mp4"), *args]) == 2
    assert expected in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_without_ray_installed_ray_says_how_to_install_it(clip, tmp_path):
    out = tmp_path / "o.mp4"
    code = ("import sys\n"
            "sys.modules['ray'] = None  # as if Ray were not installed\n"
            "from henshin.cli.main import main\n"
            f"sys.exit(main(['-q', 'convert', {str(clip[0])!r}, {str(out)!r}, '--ray']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=HENSHIN.parent)
    assert done.returncode == 2, done.stderr
    assert "pip install 'henshin[ray]'" in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_only_the_scheduler_imports_ray():
    importers = []
    for path in HENSHIN.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(path.relative_to(HENSHIN.parent).as_posix())
    assert importers == ["henshin/engine/distributed/scheduler.py"]


def test_the_command_line_and_the_distributed_engine_load_without_ray():
    code = ("import sys\n"
            "from henshin.cli.main import build_parser\n"
            "build_parser()\n"
            "import henshin.engine.distributed.run, henshin.engine.distributed.join\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=HENSHIN.parent)


def test_a_distributed_run_refuses_an_input_listed_twice(clip, tmp_path):
    from henshin.engine.distributed.run import check_files
    from henshin.errors import OptionError

    with pytest.raises(OptionError, match="listed twice"):
        check_files([(clip[0], tmp_path / "a.mp4"), (clip[0], tmp_path / "b.mp4")], overwrite=False)


def test_a_failed_join_leaves_nothing_and_names_its_temporary_like_every_output(tmp_path, monkeypatch):
    # The join writes under the shared temporary name (henshin.outputs), so a later run recognises
    # what a killed join left behind; a failure removes it at once.
    import os

    import henshin.engine.distributed.join as join_module
    from henshin.outputs import leftovers

    seen: list[Path] = []

    def failing(segments, files, tmp, output, audio_from):
        seen.append(tmp)
        raise RuntimeError("simulated failure while muxing")

    monkeypatch.setattr(join_module, "_mux", failing)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="simulated"):
        join_module.join_segments([], [], out)
    assert list(tmp_path.iterdir()) == []
    assert seen[0].parent == tmp_path and seen[0].name.startswith(f".out.mp4.{os.getpid()}-")
    dead = tmp_path / seen[0].name.replace(f".{os.getpid()}-", ".999999999-")  # a killed run's leftover
    dead.write_bytes(b"half")
    assert leftovers(out) == [dead]


# -- what is retried, and what the terminal shows ------------------------------------------------------


class BadSecondSegment(SegmentConverter):
    """Counts its attempts at the second segment, each failing as ``error`` says."""

    attempts = 0
    error: Exception = MemoryError("injected")

    def convert(self, segment, progress=None):
        if segment.index == 1:
            type(self).attempts += 1
            raise self.error
        return super().convert(segment, progress)


@pytest.mark.parametrize("error, attempts", [
    (__import__("henshin.errors").errors.BadInputError("frames 12-23 of x: injected; convert it without --ray."), 1),
    (ValueError("a bug"), 1),
    (MemoryError("out of memory"), 3),
])
def test_only_running_out_of_memory_is_retried_in_the_serial_pool(clip, tmp_path, monkeypatch, error, attempts):
    from henshin.errors import HenshinError

    monkeypatch.setattr(BadSecondSegment, "error", error)
    monkeypatch.setattr(BadSecondSegment, "attempts", 0)
    job = DistributedJob([(clip[0], tmp_path / "out.mp4")], settings(filter="tint"), segment_seconds=0.5,
                         work_root=tmp_path / "work", progress=False)
    with pytest.raises(HenshinError) as failed:
        run_distributed(job, lambda: SerialPool(job.settings, converter=BadSecondSegment))
    assert BadSecondSegment.attempts == attempts
    message = str(failed.value)
    assert f"segment 2/3 of {clip[0].resolve()}" in message
    if attempts == 1:
        assert str(error) in message and "failed 3 times" not in message
    else:
        assert "failed 3 times" in message


def test_verbose_leaves_rays_output_on_the_terminal_and_without_it_goes_to_the_work_folder(clip, tmp_path,
                                                                                         monkeypatch):
    pytest.importorskip("ray")
    import henshin.engine.distributed.run as run_module
    import henshin.engine.distributed.scheduler as scheduler

    logs = []

    def pool(settings, address, workers, gpus, log):
        logs.append(log)
        raise KeyboardInterrupt  # enough: the pool's settings are what this test reads

    monkeypatch.setattr(scheduler, "RayPool", pool)
    monkeypatch.setattr(run_module, "sha256_file", lambda path: "0" * 64)
    for verbose in ([], ["--verbose"]):
        main(["-q", "convert", str(clip[0]), str(tmp_path / "o.mp4"), "--ray", "--work-dir", str(tmp_path / "w"),
              *verbose])
    assert logs[0].parent == tmp_path / "w" / "logs" and logs[0].name.startswith("ray-") and logs[1] is None


def test_a_failing_ray_run_shows_henshins_sentence_and_where_rays_log_is_and_no_traceback(clip, tmp_path):
    # A real failure inside the workers (the filter's model is not there), with the Ray a user gets.
    pytest.importorskip("ray")
    import os

    env = {**os.environ, "HENSHIN_HOME": str(tmp_path / "home"), "RAY_ADDRESS": ""}
    henshin = "import sys; from henshin.cli.main import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", henshin, "convert", str(clip[0]), str(tmp_path / "o.mp4"),
                           "--filter", "gnr", "--ray", "--workers", "1", "--work-dir", str(tmp_path / "work")],
                          capture_output=True, text=True, cwd=HENSHIN.parent, env=env, timeout=300)
    terminal = done.stdout + done.stderr
    assert done.returncode == 2, terminal
    lines = [line for line in terminal.splitlines() if line.strip()]
    assert lines[-2].startswith("henshin: error: a Ray worker could not start: model gnr")
    assert lines[-1].startswith("henshin: Ray's log of this run is in ")
    for noise in ("Traceback", "(raylet)", "Token authentication", "pid=", "INFO", "WARNING"):
        assert noise not in terminal, terminal
    assert all(line.startswith("henshin: ") for line in lines), terminal
    log = Path(lines[-1].split(" is in ", 1)[1])
    assert log.parent == tmp_path / "work" / "logs" and "ModelError" in log.read_text()
