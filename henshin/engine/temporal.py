"""Flow-guided temporal blending: each output mixed with the previous one, moved to where the picture moved.

A filter that styles each frame on its own (style, fns) shimmers: a still
cheek gets new brush strokes on every frame. When a link's spec asks for it
(``temporal_blend`` > 0, the filters' ``--param temporal=``), the engine mixes
each output with the link's previous output for the same track, warped to the
current frame by the optical flow of the link's *input* (the flow of the
picture, not of the strokes), after Lai et al. 2018's idea of a warped previous
output as the reference:

    out_t ← out_t + w·trust·(warp(out_{t−1}) − out_t)

``trust`` is 0 where the flow cannot be believed — pixels that fail the
forward/backward consistency check (occlusions, wrong flow), whose input
changed after warping (lighting, a blink), or that came from outside the
previous picture — so moving and newly seen parts stay sharp while still parts
stop shimmering. The mix is recursive (the previous output is the blended one).

At face scope the inputs are aligned crops: the previous crop is first moved
by the crop-to-crop affine (from the two ``crop_from_frame`` matrices), and the
flow only has to find what the alignment did not (expressions, the smoothing's
lag); the two warps are composed into one resampling. At frame scope the flow
is of the whole frame. Flow runs at a reduced size (``FLOW_SIDE`` for crops,
``FLOW_WIDTH`` for frames) and is scaled up; on a torch device every step stays
there. A track's memory ends with the track, so it restarts at every cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from henshin.kernels.masks import is_torch
from henshin.kernels.optflow import (
    consistent,
    inside,
    optical_flow,
    remap,
    resize_flow,
    sample_points,
    to_grey,
)
from henshin.types import FilterSpec

FLOW_SIDE = 128  # crops: flow at this side (a 256 crop's flow at half size)
FLOW_WIDTH = 320  # whole frames: flow at this width
PHOTOMETRIC = 16.0  # grey levels: a warped previous input this far from the current one is not trusted
MAX_GAP_S = 0.5  # a previous item older than this is not used (the effect was off, a track came back)


@dataclass(slots=True)
class Previous:
    """A link's last batch item for one track: what went in, what came out (blended), the crop matrix.

    input/output: one item in the link's range and layout; matrix: its 2×3
    ``crop_from_frame`` at the link's size (None for a whole frame); time: the
    frame's time in seconds.
    """

    input: Any
    output: Any
    matrix: np.ndarray | None
    time: float = 0.0


def blend_with_previous(spec: FilterSpec, item_in: Any, item_out: Any, previous: Previous,
                        matrix: np.ndarray | None, weight: float) -> Any:
    """``item_out`` mixed with ``previous.output`` warped by the input's flow; same shape, range and layout."""
    if weight <= 0 or previous.input.shape != item_in.shape or previous.output.shape != item_out.shape:
        return item_out
    h_in, w_in = _side(item_in, spec.layout)
    h_out, w_out = _side(item_out, spec.layout)
    flow_size = _flow_size(spec, w_in, h_in)
    # back: current input pixel → previous input pixel, for the part the alignment explains.
    back = _crop_to_crop(previous.matrix, matrix)
    back_flow = _scaled(back, flow_size[0] / w_in)
    grey_cur = _grey(item_in, spec, flow_size)
    grey_prev = _grey(previous.input, spec, flow_size)
    aligned = _moved(grey_prev, back_flow)
    backward = optical_flow(grey_cur, aligned)
    forward = optical_flow(aligned, grey_cur)
    # Where each pixel was: the flow, then the alignment; checked against the previous input itself.
    points = sample_points(backward, back_flow)
    change = abs(_remap_grey(grey_prev, points) - grey_cur)
    trust = consistent(backward, forward) * inside(points, grey_prev.shape) * _clamp01(1.0 - change / PHOTOMETRIC)
    # One resampling of the previous output, at the output's size.
    points = sample_points(resize_flow(backward, (w_out, h_out)), _scaled(back, w_out / w_in))
    alpha = _resize_map(trust * weight, (w_out, h_out))
    return _mix(item_out, previous.output, points, alpha, spec.layout)


def _side(item: Any, layout: str) -> tuple[int, int]:
    """(h, w) of one batch item."""
    return (int(item.shape[1]), int(item.shape[2])) if layout == "NCHW" else (int(item.shape[0]), int(item.shape[1]))


def _grey(item: Any, spec: FilterSpec, size: tuple[int, int]) -> Any:
    """One batch item as (h, w) float32 grey 0..255 at ``size`` (w, h), shrunk before the range is changed."""
    lo, hi = spec.value_range
    if spec.layout == "NCHW":
        # Planes are contiguous: the weighted sum needs no transposed copy of the frame.
        c = item.float() if is_torch(item) else np.asarray(item, np.float32)
        grey = c[0] * 0.299 + c[1] * 0.587 + c[2] * 0.114
        grey = _resize_map(grey, size)
    else:
        grey = to_grey(item.float() if is_torch(item) else np.asarray(item, np.float32), size)
    return (grey - lo) * (255.0 / (hi - lo))


def _mix(out: Any, before: Any, points: Any, alpha: Any, layout: str) -> Any:
    """out + (before sampled at ``points`` − out)·alpha, in the items' layout, dtype and place."""
    nchw = layout == "NCHW"
    if is_torch(out):
        chw = before.float() if nchw else before.float().permute(2, 0, 1)
        warped = remap(chw.permute(1, 2, 0), points)
        base = out.float() if not nchw else out.float().permute(1, 2, 0)
        mixed = base + (warped - base) * alpha[..., None]
        return (mixed.permute(2, 0, 1) if nchw else mixed).to(out.dtype)
    base = np.asarray(out, np.float32)
    if nchw:
        warped = np.stack([remap(np.asarray(plane, np.float32), points) for plane in before])
        a = alpha[None]
    else:
        warped, a = remap(np.asarray(before, np.float32), points), alpha[..., None]
    warped -= base
    warped *= a
    warped += base
    return warped.astype(out.dtype, copy=False)


def _flow_size(spec: FilterSpec, width: int, height: int) -> tuple[int, int]:
    if spec.consumes == "crops":
        side = min(FLOW_SIDE, width)
        return side, max(1, round(height * side / width))
    w = min(FLOW_WIDTH, width)
    return w, max(1, round(height * w / width))


def _crop_to_crop(before: np.ndarray | None, now: np.ndarray | None) -> np.ndarray | None:
    """current crop pixel → previous crop pixel (2×3), from the two crop_from_frame matrices; None for frames."""
    if before is None or now is None:
        return None
    full = np.vstack([before, [0.0, 0.0, 1.0]]) @ np.linalg.inv(np.vstack([now, [0.0, 0.0, 1.0]]))
    return full[:2]


def _scaled(affine: np.ndarray | None, k: float) -> np.ndarray | None:
    """The same affine between pictures both scaled by ``k``."""
    if affine is None:
        return None
    out = affine.copy()
    out[:, 2] *= k
    return out


def _moved(grey: Any, back: np.ndarray | None) -> Any:
    """The previous picture moved into the current one's frame (no-op for whole frames)."""
    if back is None:
        return grey
    zero = grey.new_zeros((*grey.shape, 2)) if is_torch(grey) else np.zeros((*grey.shape, 2), np.float32)
    return _remap_grey(grey, sample_points(zero, back))


def _remap_grey(grey: Any, points: Any) -> Any:
    """An (h, w) grey picture sampled at ``points``."""
    out = remap(grey[..., None] if is_torch(grey) else grey, points)
    return out[..., 0] if out.ndim == 3 else out


def _clamp01(x: Any) -> Any:
    return x.clamp(0.0, 1.0) if is_torch(x) else np.clip(x, 0.0, 1.0)


def _resize_map(x: Any, size: tuple[int, int]) -> Any:
    if (x.shape[1], x.shape[0]) == tuple(size):
        return x
    if is_torch(x):
        import torch.nn.functional as F

        return F.interpolate(x[None, None], size=(size[1], size[0]), mode="bilinear", align_corners=False)[0, 0]
    import cv2

    return cv2.resize(x, tuple(size), interpolation=cv2.INTER_LINEAR)
