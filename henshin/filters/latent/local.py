"""Channel-local edits (ATMGAN, after the StyleGAN face-editing survey's "local editing").

Each channel of a StyleGAN2 feature map is scored by how its activation inside an attribute's
region follows the attribute over sampled faces (here: the Pearson correlation, over samples,
between the channel's mean activation inside the region and the attribute measured from the
generated face's landmarks). The top-k channels are raised, during synthesis, by
``strength × their spread`` (the standard deviation over samples of that in-region mean),
with the sign of their correlation, only inside the region's mask at that layer's resolution;
the rest of the face stays as it was.

A local edit file (``NAME.local.json`` among the user's directions, or any path) holds the
attribute, the layer's resolution, the channels, their signs, spreads and scores, and the
region's mask at that resolution (the mean over the samples' masks).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from henshin.errors import BadInputError, InputNotFoundError, ModelError, OptionError
from henshin.filters.latent.attributes import ATTRIBUTES, LAYERS, eye_dist
from henshin.filters.latent.directions import USER_NAME, user_directions_dir
from henshin.kernels.regions import shape_polygon

SUFFIX = ".local.json"
GROW = 0.15  # eye distances a region grows by: the attribute's surroundings move with it


NOSE = (
    168,
    417,
    351,
    419,
    248,
    281,
    363,
    360,
    279,
    294,
    327,
    2,
    98,
    64,
    49,
    131,
    134,
    51,
    3,
    196,
    122,
    193,
)


def measure(points: np.ndarray, attribute: str) -> float:
    """The attribute's value on a face, from its landmarks (478, 2+), in eye distances."""
    return ATTRIBUTES[attribute][0](points)


def attribute_mask(points: np.ndarray, attribute: str, side: int, resolution: int) -> np.ndarray:
    """(R, R) float32 in [0, 1]: the attribute's region on a ``side``-px face, at ``resolution``."""
    grow = GROW * eye_dist(points)
    full = np.zeros((side, side), np.uint8)
    for shape in ATTRIBUTES[attribute][1]:
        if shape == "nose":
            poly = np.asarray(points[list(NOSE), :2], np.float64)
            poly = cv2.convexHull(poly.astype(np.float32)).reshape(-1, 2)
        else:
            poly = shape_polygon(points, shape, grow)
        cv2.fillPoly(full, [np.rint(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return cv2.resize(
        full.astype(np.float32) / 255, (resolution, resolution), interpolation=cv2.INTER_AREA
    )


def region_means(activations: Tensor, masks: np.ndarray) -> np.ndarray:
    """(N, C): each sample's per-channel mean activation inside its own mask. activations (N, C, R, R), masks (N, R, R)."""
    m = torch.as_tensor(masks, dtype=activations.dtype, device=activations.device)
    m = m / m.sum((1, 2), keepdim=True).clamp_min(1e-6)
    return torch.einsum("ncij,nij->nc", activations, m).double().cpu().numpy()


def score_channels(inside: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, over samples: the Pearson correlation of its in-region mean ``inside`` (N, C)
    with the attribute ``values`` (N,), and the spread (std) of that mean."""
    a = inside - inside.mean(0)
    v = np.asarray(values, np.float64) - np.mean(values)
    spread = a.std(0)
    corr = (a * v[:, None]).mean(0) / np.maximum(spread * v.std(), 1e-12)
    return corr, spread


@dataclass(frozen=True)
class LocalEdit:
    """What ``henshin directions channels`` found: the attribute, the layer's resolution, the top
    channels with their correlation signs, spreads and scores, and the region's mask (R, R)."""

    attribute: str
    layer: int
    channels: tuple[int, ...]
    signs: tuple[float, ...]
    spreads: tuple[float, ...]
    scores: tuple[float, ...]
    mask: tuple[tuple[float, ...], ...]
    samples: int = 0
    faces: int = 0

    def offset(self, strength: float, n_channels: int) -> Tensor:
        """(C, R, R): ``strength × spread × sign`` on the chosen channels, inside the mask, 0 elsewhere."""
        out = torch.zeros(n_channels, self.layer, self.layer)
        mask = torch.tensor(self.mask, dtype=torch.float32)
        for c, sign, spread in zip(self.channels, self.signs, self.spreads, strict=True):
            out[c] = strength * sign * spread * mask
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> LocalEdit:
        try:
            doc = json.loads(text)
            edit = cls(
                **{
                    k: tuple(map(tuple, v))
                    if k == "mask"
                    else tuple(v)
                    if isinstance(v, list)
                    else v
                    for k, v in doc.items()
                }
            )
        except (ValueError, TypeError) as exc:
            raise ModelError(
                f"{where} is not a local edit file from `henshin directions channels` ({exc})."
            ) from None
        if edit.layer not in LAYERS or np.asarray(edit.mask).shape != (edit.layer, edit.layer):
            raise ModelError(
                f"{where} is not a local edit file: expected a layer of {LAYERS} and a mask of that size."
            )
        return edit


def local_file(spec: str) -> Path:
    """A local edit's file: a path, or the user's ``NAME`` (``NAME.local.json`` among their directions)."""
    if USER_NAME.match(spec) and not Path(spec).exists():
        path = user_directions_dir() / f"{spec}{SUFFIX}"
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise InputNotFoundError(
            f"local edit {spec} does not exist; give a file from `henshin directions channels` "
            "or the NAME you gave it."
        )
    return path


def load_local(spec: str) -> LocalEdit:
    """The local edit a ``local=`` parameter names."""
    path = local_file(spec)
    return LocalEdit.from_json(path.read_text(encoding="utf-8"), str(path))


def parse_local(text: str) -> tuple[str, float] | None:
    """``FILE:STRENGTH`` (or ``FILE``, strength 1) → (file, strength); empty → None."""
    text = text.strip()
    if not text:
        return None
    spec, colon, strength = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        value = float(strength) if colon else 1.0
    except ValueError:
        spec, value = text, 1.0
    if not spec:
        raise OptionError(f"parameter local expects FILE:STRENGTH, got {text!r}.")
    return spec, value


MIN_FACES = 10


def sample_channels(
    generator: torch.nn.Module,
    attribute: str,
    layer: int,
    samples: int,
    top: int,
    landmarks_of: Callable[[np.ndarray], np.ndarray | None],
    seed: int = 0,
    batch: int = 4,
    truncation: float = 0.7,
) -> LocalEdit:
    """Sample the generator, measure the attribute on each face it draws, score the layer's channels.

    ``landmarks_of``: an RGB uint8 picture → (478, 2+) landmarks in its pixels, or None (mediapipe's
    face mesh in still-image mode for the command; a planted stand-in in tests).
    """
    g = torch.Generator().manual_seed(seed)
    like = next(generator.parameters())
    mean_w = generator.mean_latent(4096, seed)
    means, values, masks, faces = [], [], [], 0
    with torch.no_grad():
        for start in range(0, samples, batch):
            z = torch.randn(min(batch, samples - start), generator.style_dim, generator=g).to(like)
            w = mean_w + truncation * (generator.mapping(z) - mean_w)
            record: dict[int, Tensor] = {}
            images = generator.synthesize(
                w[:, None].expand(-1, generator.n_latent, -1), record=record
            )
            pixels = (
                ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            )
            found = [(i, landmarks_of(np.ascontiguousarray(p))) for i, p in enumerate(pixels)]
            found = [(i, pts) for i, pts in found if pts is not None]
            if not found:
                continue
            faces += len(found)
            side = pixels.shape[1]
            batch_masks = np.stack(
                [attribute_mask(pts, attribute, side, layer) for _, pts in found]
            )
            means.append(region_means(record[layer][[i for i, _ in found]], batch_masks))
            values += [measure(pts, attribute) for _, pts in found]
            masks.append(batch_masks)
    if faces < MIN_FACES:
        raise BadInputError(
            f"only {faces} of the generator's {samples} samples showed a face mediapipe could find; "
            f"scoring needs at least {MIN_FACES}: give the real weights or more --samples."
        )
    corr, spread = score_channels(np.concatenate(means), np.asarray(values))
    order = np.argsort(-np.abs(np.nan_to_num(corr)))[:top]
    mask = np.concatenate(masks).mean(0)
    return LocalEdit(
        attribute,
        layer,
        tuple(int(c) for c in order),
        tuple(float(np.sign(corr[c]) or 1.0) for c in order),
        tuple(float(spread[c]) for c in order),
        tuple(round(float(corr[c]), 4) for c in order),
        tuple(tuple(round(float(x), 4) for x in row) for row in mask),
        samples,
        faces,
    )
