"""Planning a distributed conversion: segments cut at keyframes, found from the packets.

The video's packets are read (demuxed, not decoded) for their timestamps and
keyframe flags. Frames in presentation order are the sorted timestamps; a
segment is a run of them that starts on a keyframe where the keyframes allow,
and inside a long GOP where they do not (its worker then seeks back to the
keyframe before and drops the frames ahead of it). A segment is a small row of
numbers: no pixels travel with it.

Each segment also names the frames its worker decodes around it: ``warmup``
frames before its start go through the stages unwritten, so the tracker, the
smoothing and the filters' per-face state are warm at the first written frame,
and ``lookahead`` frames after its end feed the centred smoothing window.

A worker seeks to a keyframe at least ``REORDER_DEPTH`` frames before its first
warm-up frame: frames shown just before a keyframe but decoded after it (an open
GOP, B-frames before an MPEG-4 I-frame) do not decode from it, and a decoder may
stamp a frame with a neighbour's timestamp. The planner then tries each seek the
way the worker will (``seek.reaches``, one frame decoded): a segment the decoder
does not reach from its keyframe (the container's index sends the seek past it,
or the container cannot seek) is merged into the segment before it.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from henshin.engine.distributed.seek import prime, reaches
from henshin.engine.sources import REORDER_DEPTH, VideoSource
from henshin.errors import BadInputError


@dataclass(frozen=True)
class Segment:
    """One piece of one video, converted by one worker: frames ``start_pts <= pts < end_pts``.

    first/frames: the index (presentation order, from 0) of its first frame in
    the file, and how many frames it writes. warm_pts/warm_frames: the first
    frame through the stages, and how many go through before ``start_pts``.
    ahead_frames/stop_pts: frames after the segment's end that go through the
    stages, and where decoding stops (None: the end of the file). seek_ts: the
    timestamp to seek back from to the keyframe at or before ``warm_pts`` (None:
    decode from the start). window: the timestamps the worker must decode, in order.
    """

    input: str
    index: int
    count: int
    first: int
    frames: int
    start_pts: int
    end_pts: int | None
    warm_pts: int
    warm_frames: int
    ahead_frames: int
    stop_pts: int | None
    seek_ts: int | None
    time_base: Fraction
    frame_rate: Fraction
    window: tuple[int, ...] = ()  # the timestamps of every frame decoded, warm-up to look-ahead, in order

    @property
    def name(self) -> str:
        """``segment 3/8 of clip.mp4 (frames 240-319)``: how errors and logs name it."""
        return (f"segment {self.index + 1}/{self.count} of {self.input} "
                f"(frames {self.first}-{self.first + self.frames - 1})")

    def writes(self, pts: int) -> bool:
        """Whether the frame at ``pts`` is one of this segment's own (the rest are warm-up or look-ahead)."""
        return pts >= self.start_pts and (self.end_pts is None or pts < self.end_pts)


@dataclass(frozen=True)
class Packets:
    """What demuxing a video stream tells without decoding: frame timestamps and keyframes.

    pts: every frame's timestamp in presentation order. keyframes: indices into
    ``pts`` of the keyframes, ascending, with ``key_dts`` their decode timestamps.
    """

    pts: list[int]
    keyframes: list[int]
    key_dts: list[int]
    time_base: Fraction
    frame_rate: Fraction
    has_audio: bool = False


@dataclass(frozen=True)
class FilePlan:
    """One input's segments, and what they add up to."""

    input: Path
    frames: int
    time_base: Fraction
    frame_rate: Fraction
    keyframes: int
    has_audio: bool
    segments: list[Segment]


def read_packets(path: Path) -> Packets:
    """Demux the first video stream of ``path`` (no decoding) for timestamps and keyframes."""
    source = VideoSource(path)  # the same checks and messages as a local run
    rate, time_base, audio = source.frame_rate, source.time_base, source.has_audio
    source.close()
    rows: list[tuple[int, int, bool]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            if packet.pts is None:
                raise BadInputError(f"{path} has video packets without timestamps; remux it (ffmpeg -i IN -c copy "
                                    "OUT.mp4) or convert it without --ray.")
            dts = packet.dts if packet.dts is not None else packet.pts
            rows.append((packet.pts, dts, packet.is_keyframe))
    if not rows:
        raise BadInputError(f"{path} has no video frames; give a video with frames in it.")
    rows.sort()
    pts = [r[0] for r in rows]
    if len(set(pts)) != len(pts):
        raise BadInputError(f"{path} has two video frames with the same timestamp; remux it or convert it without --ray.")
    keys = [i for i, r in enumerate(rows) if r[2]]
    if not keys or keys[0] != 0:
        keys = [0, *keys]  # the first frame always decodes (from the stream's start)
    return Packets(pts, keys, [rows[i][1] for i in keys], time_base, rate, audio)


Reachable = Callable[[Segment], bool]  # whether a worker's decoder reaches a segment's warm-up from its seek


def plan_segments(packets: Packets, input: str, seconds: float, warmup: int = 8, lookahead: int = 4,
                  reachable: Reachable | None = None) -> list[Segment]:
    """Cut the frames into segments of about ``seconds`` each, on keyframes where they allow.

    A segment ends at the first keyframe at least ``seconds`` after its start,
    unless that is more than 1.5 × ``seconds`` away (a long GOP): then it ends
    ``seconds`` in, on whatever frame is there. A last piece shorter than half a
    segment joins the one before it, and so does a segment ``reachable`` says
    the decoder cannot reach.
    """
    bounds = _boundaries(packets, seconds)
    i = 1
    while i < len(bounds) - 1:
        segment = _segment(packets, input, bounds, i, warmup, lookahead)
        if reachable is None or segment.seek_ts is None or reachable(segment):
            i += 1
        else:
            del bounds[i]  # this segment's frames now start the one before: decoded from its keyframe
    return [_segment(packets, input, bounds, i, warmup, lookahead) for i in range(len(bounds) - 1)]


def _segment(packets: Packets, input: str, bounds: list[int], i: int, warmup: int, lookahead: int) -> Segment:
    """Segment ``i`` of the cut ``bounds``, with its warm-up, look-ahead and keyframe to seek to."""
    pts, n = packets.pts, len(packets.pts)
    first, end = bounds[i], bounds[i + 1]
    warm = max(0, first - warmup)
    stop = min(n, end + lookahead)
    # The keyframe at least REORDER_DEPTH frames before the first warm frame (frame 0 where none is).
    k = bisect.bisect_right(packets.keyframes, warm - REORDER_DEPTH) - 1
    key = packets.keyframes[k] if k >= 0 else 0
    return Segment(
        input=input, index=i, count=len(bounds) - 1, first=first, frames=end - first,
        start_pts=pts[first], end_pts=pts[end] if end < n else None,
        warm_pts=pts[warm], warm_frames=first - warm, ahead_frames=stop - end, stop_pts=pts[stop] if stop < n else None,
        seek_ts=None if key == 0 else min(pts[key], packets.key_dts[k]),
        time_base=packets.time_base, frame_rate=packets.frame_rate, window=tuple(pts[warm:stop]))


def plan_file(path: Path, seconds: float, warmup: int = 8, lookahead: int = 4) -> FilePlan:
    """Read ``path``'s packets and cut it into segments (see ``plan_segments``), each seek tried once."""
    packets = read_packets(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = _from_first_decoded(packets, prime(container, stream))

        def reachable(segment: Segment) -> bool:
            return reaches(container, stream, segment.seek_ts, segment.warm_pts)

        segments = plan_segments(packets, str(path), seconds, warmup, lookahead, reachable)
    return FilePlan(path, len(packets.pts), packets.time_base, packets.frame_rate, len(packets.keyframes),
                    packets.has_audio, segments)


def _from_first_decoded(packets: Packets, first_pts: int | None) -> Packets:
    """The frames from the first one a decoder gives, as a local run sees them.

    A file cut from a longer recording can start with frames shown before its first
    keyframe that refer to frames no longer in it (an open GOP): no decoder gives them.
    """
    if first_pts is None or first_pts <= packets.pts[0]:
        return packets
    cut = bisect.bisect_left(packets.pts, first_pts)
    keys = [(k - cut, dts) for k, dts in zip(packets.keyframes, packets.key_dts, strict=True) if k >= cut]
    if not keys or keys[0][0] != 0:
        keys = [(0, packets.pts[cut]), *keys]
    return dataclasses.replace(packets, pts=packets.pts[cut:], keyframes=[k for k, _ in keys],
                               key_dts=[d for _, d in keys])


def _boundaries(packets: Packets, seconds: float) -> list[int]:
    """Indices of the first frame of each segment, and the frame count at the end."""
    pts, n, base = packets.pts, len(packets.pts), packets.time_base

    def time(i: int) -> float:
        return float((pts[i] - pts[0]) * base)

    times = [time(i) for i in range(n)]
    bounds = [0]
    while True:
        start = bounds[-1]
        target = times[start] + seconds
        k = bisect.bisect_left(packets.keyframes, start + 1)
        while k < len(packets.keyframes) and times[packets.keyframes[k]] < target:
            k += 1
        if k < len(packets.keyframes) and times[packets.keyframes[k]] <= times[start] + 1.5 * seconds:
            end = packets.keyframes[k]
        else:
            end = max(start + 1, bisect.bisect_left(times, target))  # inside a long GOP
        if end >= n or times[n - 1] - times[end] < seconds / 2:
            bounds.append(n)
            return bounds
        bounds.append(end)
