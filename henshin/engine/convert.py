"""``henshin convert``: one input through a filter graph into one output (and an optional preview)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.engine.chains import ChainRequest, FilterGraph
from henshin.engine.files import FolderSink, ImageSink, VideoFileSink, check_encoder
from henshin.engine.metrics import WarpingSink
from henshin.engine.offline import OfflineConfig, run_offline
from henshin.engine.shots import CutConfig
from henshin.engine.sinks import Sink, Tee, check_folder_names, check_output, output_kind
from henshin.engine.smoothing import CentredSmoother
from henshin.engine.sources import FolderSource, ImageSource, open_source
from henshin.engine.stages import FaceStages
from henshin.engine.stats import RunStats
from henshin.engine.tracking import TrackerConfig
from henshin.errors import OptionError

log = logging.getLogger("henshin")

DEFAULT_FILTER = "style"


@dataclass
class ConvertJob:
    """Everything one conversion needs, as plain data."""

    input: Path
    output: Path
    filter: str = DEFAULT_FILTER
    params: dict[str, str] = field(default_factory=dict)
    faces: dict[int, str] = field(default_factory=dict)  # --face N=CHAIN
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    smooth_radius: int = 4  # centred window half-width, in frames (0: off)
    cuts: CutConfig = field(default_factory=CutConfig)  # shot changes (threshold 0: not looked for)
    scheduling: OfflineConfig = field(default_factory=OfflineConfig)
    overwrite: bool = False
    crf: int = 18
    preset: str = "veryfast"
    runtime: Any = None  # RuntimeOptions; None: auto
    extra_sinks: list[Sink] = field(default_factory=list)  # a preview window, say
    measure_stability: bool = False  # the warping error of output and input into the stats
    taken: list[tuple[str, Path]] = field(default_factory=list)  # other paths the run writes: ("--stats", path)


def convert(job: ConvertJob, stats: RunStats | None = None) -> RunStats:
    """Run a conversion; the output appears only when it is complete.

    Every option and the output path are checked before the source is opened;
    ``stats`` (optional) is filled as the run goes, so a caller has the figures
    of an interrupted run too.
    """
    try:
        check_encoder(job.crf, job.preset)
        request = ChainRequest(job.filter, dict(job.faces), dict(job.params))
        kind = output_kind(job.output)
        check_output(job.output, [job.input], job.overwrite, taken=job.taken)
        source = open_source(job.input)
    except BaseException:
        Tee(job.extra_sinks).abort()  # a preview window opened by the caller
        raise
    try:
        if kind == "image" and not isinstance(source, ImageSource):
            raise OptionError(f"{job.input} has several frames but {job.output} is an image; give a .mp4 output or a folder.")
        names = [p.name for p in source.files] if isinstance(source, FolderSource) else None
        if names:  # an output may not be one of the folder's images either
            check_output(job.output, [job.input, *source.files], job.overwrite, job.taken)
        if kind == "folder":
            check_folder_names(job.output, names, job.overwrite)
        # The filters next: a missing model or runtime is reported before any output exists.
        graph = FilterGraph(request, job.runtime)
        try:
            sink = _open_sink(job, source, kind, names)
            meter = WarpingSink() if job.measure_stability else None
            extra = [*job.extra_sinks, *([meter] if meter is not None else [])]
            if extra:
                sink = Tee([sink, *extra])
            stages = FaceStages(graph, CentredSmoother(job.smooth_radius), job.tracker, float(source.frame_rate),
                                job.cuts)
            try:
                stats = run_offline(source, stages, sink, job.scheduling, stats)
            finally:
                stages.close()
        finally:
            graph.close()
    finally:
        source.close()
    if meter is not None:
        stats.warping_error = meter.meter.result()
    if graph.needs_faces and stats.frames_out and not stats.frames_with_faces:
        log.warning("no face was found in %s; its frames were passed through unchanged.", job.input)
    return stats


def _open_sink(job: ConvertJob, source: Any, kind: str, names: list[str] | None) -> Sink:
    if kind == "video":
        audio = job.input if getattr(source, "has_audio", False) else None
        return VideoFileSink(job.output, source.frame_rate, source.time_base, audio, job.crf, job.preset)
    if kind == "image":
        return ImageSink(job.output)
    return FolderSink(job.output, names)
