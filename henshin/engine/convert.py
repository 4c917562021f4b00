"""``henshin convert``: one input through one filter into one output."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from henshin.engine.composite import CompositeParams
from henshin.engine.pipeline import PipelineConfig, RunStats
from henshin.engine.sinks import (
    FolderSink,
    ImageSink,
    Sink,
    VideoFileSink,
    check_output,
    output_kind,
)
from henshin.engine.sources import FolderSource, ImageSource, open_source
from henshin.errors import OptionError
from henshin.filters.base import filter_class, param_names, parse_params

log = logging.getLogger("henshin")

DEFAULT_FILTER = "style"


@dataclass
class ConvertJob:
    """Everything one conversion needs, as plain data."""

    input: Path
    output: Path
    filter: str = DEFAULT_FILTER
    params: dict[str, str] = field(default_factory=dict)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    overwrite: bool = False
    crf: int = 18
    preset: str = "veryfast"
    runtime: Any = None  # RuntimeOptions; None: auto


def split_params(filter_name: str, raw: dict[str, str]) -> tuple[Any, CompositeParams]:
    """Parse ``--param`` pairs into the filter's params and the compositor's."""
    cls = filter_class(filter_name)
    composite_keys = set(param_names(CompositeParams))
    filter_keys = set(param_names(cls.Params))
    for key in raw:
        if key not in filter_keys and key not in composite_keys:
            known = ", ".join(sorted(filter_keys | composite_keys))
            raise OptionError(f"unknown parameter {key!r} for filter {filter_name}; expected one of: {known}.")
    filter_params = parse_params(cls.Params, {k: v for k, v in raw.items() if k in filter_keys})
    composite = parse_params(CompositeParams, {k: v for k, v in raw.items() if k in composite_keys and k not in filter_keys})
    return filter_params, composite


def convert(job: ConvertJob) -> RunStats:
    """Run a conversion; the output appears only when it is complete."""
    from henshin.engine.pipeline import Pipeline
    from henshin.filters.base import create_filter

    filter_params, composite = split_params(job.filter, job.params)
    kind = output_kind(job.output)
    source = open_source(job.input)
    try:
        check_output(job.output, [job.input], job.overwrite)
    except BaseException:
        source.close()
        raise
    try:
        # The filter first: a missing model or runtime is reported before any output exists.
        filt = create_filter(job.filter, filter_params, job.runtime)
        try:
            sink = _open_sink(job, source, kind)
            job.pipeline.composite = composite
            stats = Pipeline(source, filt, sink, job.pipeline).run()
        finally:
            filt.close()
    finally:
        source.close()
    if filt.scope == "face" and stats.frames_out and not stats.frames_with_faces:
        log.warning("no face was found in %s; its frames were passed through unchanged.", job.input)
    return stats


def _open_sink(job: ConvertJob, source: Any, kind: str) -> Sink:
    if kind == "video":
        audio = job.input if getattr(source, "has_audio", False) else None
        return VideoFileSink(job.output, source.frame_rate, source.time_base, audio, job.crf, job.preset)
    if kind == "image":
        if not isinstance(source, ImageSource):
            raise OptionError(f"{job.input} has several frames but {job.output} is an image; give a .mp4 output or a folder.")
        return ImageSink(job.output)
    names = [p.name for p in source.files] if isinstance(source, FolderSource) else None
    return FolderSink(job.output, names)
