"""``--filter gnr``: every face an anime face by GANs N' Roses, each with a look that never drifts.

GANs N' Roses (Chong & Forsyth 2021) splits a face into a content code (from the
picture) and an 8-d style code (the look). Holding a face's style code fixed makes
video consistent with no temporal training, so the look is per-face state: the k-th
face this filter meets (k = 0, 1, … in order of appearance) gets
``style_from_seed(seed + k)`` for its whole life, or, with ``reference``/``style_file``,
one code for every face. Its mapped w is computed once when the face appears; per
frame only ``decode_w(content_of(crop), w)`` runs, as one network with two batched
inputs (``henshin.filters.gnr.FaceToAnime``) under any runtime. ``morph`` moves each
face's w linearly to a second look over ``morph_seconds`` from the face's first frame.

Anime faces do not keep the face's outline, so the whole crop is pasted back inside a
feathered border (spec ``mask="crop"``). torch and the network are imported only when
the filter is built, so listing filters stays cheap.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from henshin.errors import BadInputError, InputNotFoundError, ModelError, OptionError, OutputError
from henshin.filters.base import Filter, check_range, register
from henshin.filters.networks import placement
from henshin.kernels.masks import is_torch
from henshin.outputs import write_atomic
from henshin.runtimes import build
from henshin.types import FaceContext, FilterSpec

log = logging.getLogger("henshin")

MODEL = "gnr"  # the registry entry
BOX_SCALE = 1.3  # util.py's get_boundingbox(scale=1.3): the official video recipe's loose square


@dataclass(frozen=True)
class GNRParams:
    """seed: style code of the first face (face k gets seed + k); reference: an anime picture
    whose style every face takes; style_file: a saved style code (.npy from save_style, or a
    .pt tensor) for every face; save_style: write the first face's code to this .npy;
    morph: a second seed each face moves to (face k: morph + k; -1: off) over morph_seconds
    from its first frame; strength: 0 keeps the input, 1 the anime face; crop: aligned (FFHQ
    square) or box (upright square 1.3x the face box, the official video recipe); border:
    feathered edge of the pasted crop (fraction of its side); weights: a GNR_checkpoint.pt
    instead of the registry model; random_weights: seeded random weights, for testing only."""

    seed: int = 0
    reference: str = ""
    style_file: str = ""
    save_style: str = ""
    morph: int = -1
    morph_seconds: float = 5.0
    strength: float = 1.0
    crop: Literal["aligned", "box"] = "aligned"
    border: float = 0.1
    weights: str = ""
    random_weights: bool = False

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, 2**63 - 1)
        check_range("morph", self.morph, -1, 2**63 - 1)
        if not (math.isfinite(self.morph_seconds) and self.morph_seconds > 0):
            raise OptionError(f"parameter morph_seconds expects a number of seconds above 0, got {self.morph_seconds:g}.")
        check_range("strength", self.strength, 0.0, 1.0)
        check_range("border", self.border, 0.0, 0.5)
        if self.reference and self.style_file:
            raise OptionError("parameters reference and style_file both choose every face's look; give one of them.")
        if self.weights and self.random_weights:
            raise OptionError("parameters weights and random_weights both choose the weights; give one of them.")
        for key in ("reference", "style_file", "weights"):
            value = getattr(self, key)
            if value and not Path(value).expanduser().is_file():
                raise InputNotFoundError(f"{key} file {value} does not exist; check the path given with --param {key}=.")
        if self.save_style:
            target = Path(self.save_style).expanduser()
            if target.suffix.lower() != ".npy":
                raise OptionError(f"parameter save_style expects a .npy file name, got {self.save_style!r}.")
            if not target.parent.is_dir():
                raise OutputError(f"the folder of save_style {self.save_style} does not exist; create it first.")


@dataclass(eq=False)
class FaceLook:
    """One face's look (its per-face state): its order among the faces, style code (8,), mapped w
    (style_dim,), and for a morph the target w and the time of the face's first frame."""

    order: int
    code: np.ndarray
    w: np.ndarray
    target: np.ndarray | None = None
    start: float | None = None


@register
class GNRFilter(Filter):
    """GANs N' Roses: faces to anime faces, each face with its own fixed style (needs `henshin models pull gnr`)."""

    name = "gnr"
    Params = GNRParams

    def __init__(self, params: GNRParams, runtime: Any = None, weights: Any = None) -> None:
        super().__init__(params, runtime, weights)
        self._array, self._device = placement(self.runtime, has_torch_module=True)
        self._faces = 0
        self._looks: dict[int, FaceLook] = {}
        self.model, self.key = self._load(params)
        self._fixed = self._read_fixed(params, self.model)
        # Built now, not on the first batch: one input shape only, and an export, a TensorRT plan or
        # a runtime that is missing is then done or reported before any frame is read.
        self._net = self._build(self.model, self.key)
        if params.save_style:
            self._save_style()

    @classmethod
    def required_models(cls, params: GNRParams) -> tuple[str, ...]:
        return () if params.weights or params.random_weights else (MODEL,)

    @property
    def spec(self) -> FilterSpec:
        return FilterSpec(consumes="crops", size=self.model.generator.size, value_range=(-1.0, 1.0),
                          array=self._array, device=self._device, devices=("cpu", "cuda"), mask="crop",
                          border=self.params.border, crop=self.params.crop, box_scale=BOX_SCALE)

    @property
    def opacity(self) -> float:
        return self.params.strength

    # -- per-face looks ------------------------------------------------------------------------

    def start_track(self, track_id: int) -> FaceLook:
        """A new face: the next look in order (seed + k, or the reference's), its w mapped once."""
        look = FaceLook(self._faces, np.zeros(0, np.float32), np.zeros(0, np.float32))
        self._faces += 1
        self._restyle(look)
        self._looks[track_id] = look
        return look

    def end_track(self, track_id: int, state: Any) -> None:
        self._looks.pop(track_id, None)

    def code_for(self, order: int) -> np.ndarray:
        """The style code (8,) float32 of the face numbered ``order`` under the current parameters."""
        if self._fixed is not None:
            return self._fixed
        return _gnr().style_from_seed(self.params.seed + order)[0].numpy()

    def _restyle(self, look: FaceLook) -> None:
        p = self.params
        look.code = self.code_for(look.order)
        look.w = self._map(look.code)
        look.target = self._map(_gnr().style_from_seed(p.morph + look.order)[0].numpy()) if p.morph >= 0 else None

    def _map(self, code: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.map_style(torch.from_numpy(code)[None])[0].numpy()

    def w_at(self, look: FaceLook, time: float) -> np.ndarray:
        """A face's w at ``time`` s: fixed, or on the line from its look to the morph's, clamped at the end."""
        if look.target is None:
            return look.w
        if look.start is None:
            look.start = time
        t = min(max((time - look.start) / self.params.morph_seconds, 0.0), 1.0)
        return (1.0 - t) * look.w + t * look.target  # exactly the target at t = 1

    # -- the network -------------------------------------------------------------------------

    def process(self, batch: Any, faces: Sequence[FaceContext]) -> Any:
        w = np.stack([self.w_at(c.state, c.time) for c in faces]).astype(np.float32, copy=False)
        if is_torch(batch):
            import torch

            w = torch.from_numpy(w).to(batch.device)  # a few KB per batch, the only upload
        out = self._net(batch, w)
        return out.clamp(-1.0, 1.0) if is_torch(out) else np.clip(out, -1.0, 1.0)

    def _build(self, model: Any, key: str) -> Any:
        """The (faces, w) → anime network of ``model`` under the filter's runtime."""
        generator = model.generator
        size = generator.size
        return build(self.runtime, key, [("image", (3, size, size)), ("w", (generator.style_dim,))],
                     module=_gnr().FaceToAnime(generator))

    # -- parameters, files ---------------------------------------------------------------------

    def set_params(self, **changes: str) -> None:
        """Change parameters; a new seed, reference, style file or morph restyles the faces in place, in order."""
        old = self.params
        super().set_params(**changes)
        p = self.params
        try:  # everything that can fail first, so a refused change leaves the filter as it was
            model, key, net = self.model, self.key, self._net
            # Random weights build the anime style encoder only for a reference.
            if ((p.weights, p.random_weights) != (old.weights, old.random_weights)
                    or (p.reference and model.anime_style is None and p.random_weights)):
                model, key = self._load(p)
                net = self._build(model, key)
            fixed = self._read_fixed(p, model)
        except BaseException:
            self.params = old
            raise
        self.model, self.key, self._net, self._fixed = model, key, net, fixed
        if any(getattr(p, k) != getattr(old, k) for k in ("seed", "reference", "style_file", "morph", "weights",
                                                           "random_weights")):
            for look in self._looks.values():
                self._restyle(look)
        if p.save_style and p.save_style != old.save_style:
            self._save_style()

    def _load(self, p: GNRParams) -> tuple[Any, str]:
        """The network and its runtime cache key: seeded random weights, a given file, or the registry's."""
        gnr = _gnr()
        if p.random_weights:
            log.warning("the gnr filter runs with seeded random weights (random_weights=1): its faces are "
                        "meaningless, for testing only.")
            return gnr.random_gnr(0, anime_style=bool(p.reference)), "gnr-random"
        path = Path(p.weights).expanduser() if p.weights else self.weights_file(MODEL)
        return gnr.load_gnr(path), f"gnr-{path.stem}" if p.weights else "gnr"

    def _read_fixed(self, p: GNRParams, model: Any) -> np.ndarray | None:
        """The one style code every face takes (a reference picture's or a style file's), or None."""
        if p.style_file:
            return read_style_file(Path(p.style_file).expanduser())
        if p.reference:
            import torch

            image = read_reference(Path(p.reference).expanduser(), model.generator.size)
            with torch.no_grad():
                return model.style_of(torch.from_numpy(image))[0].numpy().astype(np.float32)
        return None

    def _save_style(self) -> None:
        write_style_file(Path(self.params.save_style).expanduser(), self.code_for(0))

    def close(self) -> None:
        self._net = None  # the runtime's session, graphs or plan


def _gnr() -> Any:
    """``henshin.nets.gnr``, imported on first use (it imports torch)."""
    try:
        from henshin.nets import gnr
    except ImportError:
        raise ModelError("the gnr filter needs torch; install it with: pip install 'henshin[torch]'.") from None
    return gnr


def read_reference(path: Path, size: int) -> np.ndarray:
    """An anime picture as the style encoder reads it: its centre square at size×size, (1, 3, size, size) in [-1, 1]."""
    import cv2

    from henshin.filters.reference import centre_square, read_picture

    square = centre_square(read_picture(path, "reference", "check the path given with --param reference="), size,
                           upscale=cv2.INTER_LINEAR)
    rgb = square.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def read_style_file(path: Path) -> np.ndarray:
    """A saved style code as (8,) float32: a .npy from save_style, or a .pt holding a (1, 8) or (8,) tensor."""
    from henshin.models.checkpoints import load_checkpoint

    value = load_checkpoint(path)
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu" or value.shape not in ((8,), (1, 8)):
        got = f"shape {tuple(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
        raise BadInputError(f"style file {path} holds {got}; expected a style code of 8 numbers, (8,) or (1, 8), "
                            "as save_style writes.")
    code = value.reshape(8).astype(np.float32)
    if not np.isfinite(code).all():
        raise BadInputError(f"style file {path} holds numbers that are not finite; save the style again.")
    return code


def write_style_file(path: Path, code: np.ndarray) -> None:
    """Write a style code (8,) as .npy under a temporary name, then rename; an existing file is refused."""
    if path.exists():
        raise OutputError(f"style file {path} already exists; remove it or give save_style another name.")
    data = io.BytesIO()
    np.save(data, np.asarray(code, np.float32).reshape(8))
    write_atomic(path, data.getvalue(), f"style file {path}")
