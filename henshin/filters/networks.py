"""What the filters that run a network share: runtime options, where the batch lives, padding.

Filters never import the engine or the model store: the engine hands each filter
its runtime options and the files of the models it needs; these helpers fill in
the defaults when a filter is built directly (in tests, or from Python).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from henshin.kernels.masks import is_torch
from henshin.runtimes import RuntimeOptions, choose_runtime, cuda_available


def runtime_options(runtime: Any) -> RuntimeOptions:
    """``runtime`` or, when None, the default options (``auto``)."""
    return runtime if runtime is not None else RuntimeOptions()


def placement(runtime: Any, has_torch_module: bool) -> tuple[str, str]:
    """Where a network's batches live under these options: ("torch", "cuda:N") or ("numpy", "cpu").

    Torch on a GPU takes tensors that stay on the device from crop to paste-back;
    everything on the CPU, and the ONNX runtimes anywhere (ONNX Runtime with any
    provider, TensorRT through it, OpenVINO), take NumPy arrays.
    """
    options = runtime_options(runtime)
    name = choose_runtime(options.runtime, has_torch_module)
    if name != "torch":
        return "numpy", "cpu"
    device = options.device or ("cuda" if cuda_available() else "cpu")
    if not device.startswith("cuda"):
        return "numpy", "cpu"
    return "torch", device if ":" in device else "cuda:0"


def runtime_for_shape(opened: dict[tuple[int, ...], Any], sample: tuple[int, ...],
                      build: Callable[[], Any]) -> Any:
    """The runtime for first inputs of per-sample shape ``sample``.

    One already opened that accepts the shape is reused (eager torch, or an ONNX graph
    whose sizes are free); otherwise ``build`` makes one for it. ``opened`` is the
    filter's cache, keyed by shape.
    """
    if sample not in opened:
        opened[sample] = next((r for r in opened.values() if r.accepts(sample)), None) or build()
    return opened[sample]


def pad_to_multiple(batch: Any, multiple: int) -> tuple[Any, int, int]:
    """Reflect-pad (N, C, H, W) so H and W are multiples of ``multiple``; returns it with the original H, W."""
    h, w = batch.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        if is_torch(batch):
            import torch.nn.functional as F

            batch = F.pad(batch, (0, pw, 0, ph), mode="reflect")
        else:
            batch = np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
    return batch, h, w


# Face crops for int8 calibration and its check: (dx, dy) shift and scale of the framing and a
# mirror, over the astronaut photo that ships with scikit-image.
CALIBRATION_VIEWS = ((0, 0, 1.0, False), (10, -8, 1.1, True), (-12, 6, 0.9, False), (5, 12, 1.2, True),
                     (0, -10, 0.95, False), (-6, 0, 1.05, True), (8, 4, 1.0, False), (-4, -6, 1.15, True))


def calibration_faces(h: int, w: int) -> list[np.ndarray]:
    """Face crops (1, 3, h, w) in [0, 1], framed like the engine's: what a face network is calibrated on."""
    import cv2
    from skimage import data

    photo = data.astronaut()
    out = []
    for dx, dy, scale, mirror in CALIBRATION_VIEWS:
        cx, cy, half = 225 + dx, 125 + dy, 100 * scale  # the face's centre and half the FFHQ square's side
        source = np.float32([[cx - half, cy - half], [cx + half, cy - half], [cx - half, cy + half]])
        matrix = cv2.getAffineTransform(source, np.float32([[0, 0], [w, 0], [0, h]]))
        crop = cv2.warpAffine(photo, matrix, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        crop = crop[:, ::-1] if mirror else crop
        out.append((crop.astype(np.float32) / 255).transpose(2, 0, 1)[None].copy())
    return out
