"""Getting a decoder to a segment: seek to a keyframe, decode forward, and check where it landed.

The worker and the planner decode the same way, so what the planner finds
reachable the worker reaches: the stream's first frame is decoded once (some
streams say only there how the rest is coded), then the container seeks back to
the keyframe the plan names and decodes forward. Where the decoder lands is not
assumed: frames come out with their presentation-order timestamps
(``presentation_order``), and the caller keeps them by timestamp.
"""

from __future__ import annotations

from collections.abc import Iterator

import av

from henshin.engine.sources import presentation_order


def prime(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> int | None:
    """Decode the stream's first frame, before any seek; its timestamp (None: no frame decodes).

    MPEG-4 Part 2 that packs B-frames DivX-style says so only in its first frame's
    user data; a decoder that never read it drops every B-frame after a seek.
    """
    try:
        first = next(iter(container.decode(stream)), None)
    except av.error.FFmpegError:
        return None
    return None if first is None else first.pts


def decode_from(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, seek_ts: int | None
) -> Iterator[tuple[av.VideoFrame, int | None]]:
    """Decoded frames from the keyframe at or before ``seek_ts`` (None: from the start), with their timestamps.

    A decoder that is to seek must be ``prime``d first.
    """
    if seek_ts is not None:
        container.seek(seek_ts, stream=stream, backward=True)
    return presentation_order(container.decode(stream))


def reaches(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    seek_ts: int,
    warm_pts: int,
) -> bool:
    """Whether decoding from ``seek_ts`` (primed) starts at or before ``warm_pts``: a container's index can send it later.

    One frame is decoded (the first out is the keyframe, or a frame shown before it), and
    a container that refuses to seek gives False.
    """
    try:
        container.seek(seek_ts, stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is not None:
                return frame.pts <= warm_pts
    except av.error.FFmpegError:
        return False
    return False
