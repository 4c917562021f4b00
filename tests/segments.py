"""Helpers the distributed-conversion tests share: clips with known keyframes, packet listings."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.conftest import decode_video


def reencode(src: Path, dst: Path, keyint: int) -> Path:
    """``src``'s frames (no audio) as H.264 with a keyframe every ``keyint`` frames and B-frames."""
    frames, pts, time_base = decode_video(src)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = time_base
        stream.options = {"crf": "16", "preset": "veryfast",
                          "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2"}
        for image, p in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def video_packets(path: Path) -> list[tuple[int, int, bool]]:
    """(pts, dts, keyframe) of every video packet, in file (decode) order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pts, p.dts, p.is_keyframe) for p in container.demux(stream) if p.size]


def frame_diffs(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
    """Mean absolute difference of each pair of frames, in 8-bit levels."""
    return [float(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean()) for x, y in zip(a, b, strict=True)]


def time_base_of(path: Path) -> Fraction:
    """The first video stream's time base."""
    with av.open(str(path)) as container:
        return container.streams.video[0].time_base


def jittered_clip(path: Path, sigma: float = 1.5, seed: int = 0) -> Path:
    """The sample clip's motion with the photo shaken by ``sigma`` pixels a frame: landmarks that need smoothing."""
    from henshin.samples import background, motion, portrait, render
    from tests.conftest import CLIP

    affines, light = motion(CLIP)
    affines = affines.copy()
    affines[..., 2] += np.random.default_rng(seed).normal(0, sigma, size=affines[..., 2].shape)
    photo, bg = portrait(), background(CLIP.width, CLIP.height)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP.fps)
        stream.width, stream.height, stream.pix_fmt = CLIP.width, CLIP.height, "yuv420p"
        stream.options = {"crf": "12"}
        for i in range(CLIP.frames):
            frame = av.VideoFrame.from_ndarray(render(CLIP, affines, light, i, photo, bg), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, CLIP.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


# -- clips in the codecs and containers people split: small, with keyframes where a test wants them ------


def moving_pictures(count: int, width: int = 160, height: int = 120):
    """``count`` frames in which every frame differs from its neighbours (a frame off shows at once)."""
    for i in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = (i * 5) % 256
        image[:, (i * 3) % width, 1] = 255
        image[(i * 7) % height, :, 2] = 255
        yield image


def codec_clip(path: Path, codec: str, count: int, rate: Fraction, options: dict[str, str] | None = None,
               keys: frozenset[int] = frozenset(), b_frames: int | None = None, audio: str | None = None) -> Path:
    """``count`` moving pictures encoded with ``codec`` at ``rate``, I-frames forced at ``keys``, and a tone in ``audio``."""
    from av.video.frame import PictureType

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
            stream.codec_context.gop_size = 10_000  # keyframes only where forced
        stream.options = options or {}
        sound = out.add_stream(audio, rate=48000, layout="mono") if audio else None
        for i, image in enumerate(moving_pictures(count)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            if i in keys:
                frame.pict_type = PictureType.I
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            write_tone(out, sound, float(count / rate))
    return path


def write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    """A 440 Hz tone of ``seconds`` into ``stream``, in whatever sample format its encoder takes."""
    rate = stream.codec_context.sample_rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
    for start in range(0, len(tone), 960):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + 960], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        for part in resampler.resample(frame):
            out.mux(stream.encode(part))
    out.mux(stream.encode(None))


def packed_avi(path: Path, count: int, rate: Fraction, keys: frozenset[int], audio: bool = False) -> Path:
    """MPEG-4 Part 2 in AVI with DivX-style packed B-frames, as DivX and Xvid wrote them.

    FFmpeg's encoder writes B-frames unpacked; this packs them the way DivX 5 did: a P-frame
    and the B-frame after it in one packet, then a not-coded frame (N-VOP) in the next, and
    the "DivX503b1393p" user data that tells a decoder the file is packed. A decoder then
    hands frames back with each B-frame's timestamp swapped with its P-frame's.
    """
    ctx = av.CodecContext.create("mpeg4", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 160, 120, "yuv420p"
    ctx.time_base, ctx.framerate = 1 / rate, rate
    ctx.max_b_frames, ctx.gop_size = 1, 10_000
    ctx.options = {"sc_threshold": "1000000000"}  # keyframes only where forced
    from av.video.frame import PictureType

    coded: list[bytes] = []
    for i, image in enumerate(moving_pictures(count)):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        if i in keys:
            frame.pict_type = PictureType.I
        coded += [bytes(p) for p in ctx.encode(frame)]
    coded += [bytes(p) for p in ctx.encode(None)]
    packets = _pack_b_frames(coded, (rate.numerator - 1).bit_length())  # the encoder's vop_time_increment bits
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=rate)
        stream.width, stream.height = 160, 120
        stream.codec_context.codec_tag = "DX50"
        sound = out.add_stream("pcm_s16le", rate=48000, layout="mono") if audio else None
        for k, data in enumerate(packets):
            packet = av.Packet(data)
            packet.pts = packet.dts = k
            packet.time_base, packet.stream = 1 / rate, stream
            out.mux(packet)
        if sound is not None:
            write_tone(out, sound, float(len(packets) / rate))
    return path


def _vop_type(data: bytes) -> str:
    """I, P, B or S: the coding type of the first VOP (start code 00 00 01 B6) in ``data``."""
    at = data.find(b"\x00\x00\x01\xb6")
    return "IPBS"[data[at + 4] >> 6]


def _pack_b_frames(coded: list[bytes], increment_bits: int) -> list[bytes]:
    """Unpacked MPEG-4 Part 2 packets (decode order) packed DivX-style, the DivX user data in the first."""
    packed, i = [], 0
    while i < len(coded):
        if _vop_type(coded[i]) in "IP" and i + 1 < len(coded) and _vop_type(coded[i + 1]) == "B":
            packed += [coded[i] + coded[i + 1], _n_vop(increment_bits)]
            i += 2
        else:
            packed.append(coded[i])
            i += 1
    at = packed[0].find(b"\x00\x00\x01\xb6")
    packed[0] = packed[0][:at] + b"\x00\x00\x01\xb2DivX503b1393p" + packed[0][at:]
    return packed


def _n_vop(increment_bits: int) -> bytes:
    """A not-coded VOP: coding type P, time base 0, marker, time increment 0, marker, vop_coded 0, stuffing."""
    bits = "01" + "0" + "1" + "0" * increment_bits + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


# The clips of the codec tests: each with B-frames or hidden frames, keyframes irregular or frequent.
RATE_NTSC_FILM = Fraction(24000, 1001)


def clip_of_kind(kind: str, folder: Path) -> Path:
    """A small clip of one ``kind``: mpeg4-packed, mpeg4-avi, h264-open-gop, h264-cut or vp9-mkv."""
    if kind == "mpeg4-packed":  # DivX-style, keyframes at 0, 1, then irregular (the film clip, shortened)
        return packed_avi(folder / "packed.avi", 60, RATE_NTSC_FILM, frozenset({0, 1, 21, 34, 49}))
    if kind == "mpeg4-avi":  # FFmpeg's own MPEG-4 Part 2: B-frames unpacked
        return codec_clip(folder / "mpeg4.avi", "mpeg4", 60, RATE_NTSC_FILM, {"sc_threshold": "1000000000"},
                          keys=frozenset({0, 1, 21, 34, 49}), b_frames=2)
    if kind == "h264-open-gop":  # three B-frames, a GOP every 10 frames that starts with frames shown before it
        params = "keyint=10:min-keyint=3:scenecut=0:bframes=3:b-adapt=0:open-gop=1"
        return codec_clip(folder / "open-gop.mp4", "libx264", 48, Fraction(25),
                          {"x264-params": params, "preset": "veryfast"}, audio="aac")
    if kind == "h264-cut":  # a recording cut at an open GOP's keyframe: its first frames cannot decode
        return cut_at_keyframe(clip_of_kind("h264-open-gop", folder), folder / "cut.mkv", 1)
    if kind == "vp9-mkv":  # hidden alt-ref frames, a keyframe every 9
        return codec_clip(folder / "vp9.mkv", "libvpx-vp9", 48, Fraction(30),
                          {"g": "9", "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "16"}, audio="libopus")
    raise ValueError(kind)


def decode_audio(path: Path) -> np.ndarray:
    """Every decoded audio sample of the first audio stream, channels stacked (empty when there is none)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([f.to_ndarray() for f in container.decode(container.streams.audio[0])], axis=1)


def cut_at_keyframe(src: Path, dst: Path, keyframe: int) -> Path:
    """``src``'s video packets from its ``keyframe``-th keyframe on (in file order), copied into ``dst``."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        seen = 0
        for packet in inp.demux(stream):
            seen += packet.is_keyframe
            if packet.size and seen > keyframe:
                packet.stream = copy
                out.mux(packet)
    return dst
