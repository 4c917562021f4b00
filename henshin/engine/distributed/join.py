"""Joining converted segments into one video by stream copy, with the source's audio.

Every segment was encoded by a fresh encoder with the same settings, so each
starts with an IDR frame and all share one set of codec parameters: their
packets can follow one another in one stream without re-encoding. Each
segment is re-anchored on its first presented timestamp (its own start in the
source), so presentation timestamps continue exactly where the previous
segment's stopped and decode timestamps stay monotonic with B-frames. The
source's audio is copied as it is, interleaved by time, and the file is
written under a temporary name and moved into place when complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from henshin.engine.distributed.plan import Segment
from henshin.engine.files import _AudioCopy as AudioCopy
from henshin.engine.files import container_format
from henshin.errors import BadInputError
from henshin.outputs import commit, discard, partial_path


@dataclass(frozen=True)
class JoinStats:
    """What a join wrote and how long it took."""

    frames: int
    seconds: float


def join_segments(segments: Sequence[Segment], files: Sequence[Path], output: Path,
                  audio_from: Path | None = None) -> JoinStats:
    """Write ``files`` (the encoded ``segments``, in order) into ``output`` by stream copy."""
    start = time.perf_counter()
    tmp = partial_path(output)
    try:
        frames = _mux(segments, files, tmp, output, audio_from)
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, output)
    return JoinStats(frames, time.perf_counter() - start)


def _mux(segments: Sequence[Segment], files: Sequence[Path], tmp: Path, output: Path,
         audio_from: Path | None) -> int:
    time_base = segments[0].time_base
    frames = 0
    with av.open(str(files[0])) as first, av.open(str(tmp), "w", format=container_format(output)) as out:
        template = first.streams.video[0]
        video = out.add_stream_from_template(template)
        video.time_base = time_base
        extradata = template.codec_context.extradata
        # The local video sink's audio path, so a joined output carries the same audio as a local one.
        audio = AudioCopy(audio_from, out) if audio_from is not None else None
        last_dts: int | None = None
        try:
            for segment, file in zip(segments, files, strict=True):
                for packet in _anchored(segment, file, extradata):
                    if last_dts is not None and packet.dts <= last_dts:
                        raise BadInputError(f"{segment.name} would go back in decode time ({packet.dts} after "
                                            f"{last_dts}); its segments were not encoded alike, convert it again.")
                    last_dts = packet.dts
                    if audio is not None:
                        audio.mux_until(float(packet.pts * time_base))
                    packet.stream = video
                    out.mux(packet)
                    frames += 1
            if audio is not None:
                audio.mux_until(None)
        finally:
            if audio is not None:
                audio.close()
    expected = sum(s.frames for s in segments)
    if frames != expected:
        raise BadInputError(f"the segments of {segments[0].input} hold {frames} frames, {expected} expected; "
                            "convert it again.")
    return frames


def _anchored(segment: Segment, file: Path, extradata: bytes | None) -> list[av.Packet]:
    """A segment's packets with timestamps in the source's time base, its first presented one at its start."""
    with av.open(str(file)) as container:
        stream = container.streams.video[0]
        if stream.codec_context.extradata != extradata:
            raise BadInputError(f"{segment.name} was encoded with other codec settings than the first segment; "
                                "remove the work folder and convert again with the same settings everywhere.")
        packets = [p for p in container.demux(stream) if p.size and p.pts is not None]
        if not packets:
            raise BadInputError(f"{segment.name} holds no video; remove the work folder and convert again.")
        if not packets[0].is_keyframe:
            raise BadInputError(f"{segment.name} does not start with a keyframe; remove the work folder and "
                                "convert again.")
        scale = Fraction(stream.time_base) / segment.time_base
        first = min(p.pts for p in packets)
        for p in packets:
            dts = p.dts if p.dts is not None else p.pts
            p.pts = segment.start_pts + round((p.pts - first) * scale)
            p.dts = segment.start_pts + round((dts - first) * scale)
            p.time_base = segment.time_base
        return packets

