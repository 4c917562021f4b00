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
    optical_flow,
    remap,
    resize_flow,
    sample_points,
    to_grey,
)
from henshin.kernels.warp import batch_to_pixels
from henshin.types import FilterSpec

FLOW_SIDE = 128  # crops: flow at this side (a 256 crop's flow at half size)
FLOW_WIDTH = 320  # whole frames: flow at this width
PHOTOMETRIC = 16.0  # grey levels: a warped previous input this far from the current one is not trusted


@dataclass(slots=True)
class Previous:
    """A link's last batch item for one track: what went in, what came out (blended), the crop matrix.

    input/output: one item in the link's range and layout; matrix: its 2×3
    ``crop_from_frame`` at the link's size (None for a whole frame).
    """

    input: Any
    output: Any
    matrix: np.ndarray | None


def blend_with_previous(spec: FilterSpec, item_in: Any, item_out: Any, previous: Previous,
                        matrix: np.ndarray | None, weight: float) -> Any:
    """``item_out`` mixed with ``previous.output`` warped by the input's flow; same shape, range and layout."""
    if weight <= 0 or previous.input.shape != item_in.shape:
        return item_out
    nchw = spec.layout == "NCHW"
    cur = batch_to_pixels(item_in, spec.value_range, spec.layout)
    prev = batch_to_pixels(previous.input, spec.value_range, spec.layout)
    out = _hwc(item_out, nchw)
    prev_out = _hwc(previous.output, nchw)
    h_in, w_in = cur.shape[:2]
    h_out, w_out = out.shape[:2]
    flow_size = _flow_size(spec, w_in, h_in)
    # back: current input pixel → previous input pixel, for the part the alignment explains.
    back = _crop_to_crop(previous.matrix, matrix)
    k = flow_size[0] / w_in
    grey_cur = to_grey(cur, flow_size)
    grey_prev = _moved(to_grey(prev, flow_size), _scaled(back, k))
    backward = optical_flow(grey_cur, grey_prev)
    forward = optical_flow(grey_prev, grey_cur)
    warped_grey, inside = remap(grey_prev[..., None], sample_points(backward))
    change = abs(warped_grey[..., 0] - grey_cur)
    trust = consistent(backward, forward) * inside * _clamp01(1.0 - change / PHOTOMETRIC)
    # One resampling of the previous output: flow at the output's size, then the alignment.
    r = w_out / w_in
    points = sample_points(resize_flow(backward, (w_out, h_out)), _scaled(back, r))
    warped, inside_out = remap(prev_out, points)
    alpha = _resize_map(trust, (w_out, h_out)) * inside_out * weight
    mixed = out + (warped - out) * alpha[..., None]
    mixed = mixed.permute(2, 0, 1) if nchw and is_torch(mixed) else mixed.transpose(2, 0, 1) if nchw else mixed
    return mixed.to(item_out.dtype) if is_torch(mixed) else mixed.astype(item_out.dtype, copy=False)


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
    return remap(grey[..., None], sample_points(zero, back))[0][..., 0]


def _hwc(item: Any, nchw: bool) -> Any:
    if is_torch(item):
        x = item.float()
        return x.permute(1, 2, 0) if nchw else x
    x = np.asarray(item, np.float32)
    return x.transpose(1, 2, 0) if nchw else x


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
