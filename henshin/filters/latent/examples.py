"""A folder of example pictures as W+ codes: each picture's largest face aligned as the latent filter
sees faces (FFHQ square, 256 px, ``henshin.filters.reference``), then encoded with e4e."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from henshin.errors import BadInputError, InputNotFoundError
from henshin.filters.latent.networks import ENCODER_SIZE, LatentNets
from henshin.filters.networks import placement
from henshin.filters.reference import aligned_crop, face_mesh, find_face, read_picture

log = logging.getLogger("henshin")

PICTURES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
BATCH = 8


def pictures_in(folder: Path, flag: str) -> list[Path]:
    """The picture files directly inside ``folder``, sorted; a missing folder or one without pictures is refused."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputNotFoundError(f"{flag} {folder} is not a folder; give a folder of pictures.")
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURES)
    if not found:
        raise BadInputError(
            f"{flag} {folder} holds no pictures ({', '.join(PICTURES)}); put the example faces in it."
        )
    return found


def face_crops(paths: Sequence[Path], flag: str) -> np.ndarray:
    """Each picture's largest face as an aligned crop: (N, 3, 256, 256) in [-1, 1]; pictures without one skipped."""
    crops = []
    with face_mesh() as mesh:
        for path in paths:
            image = read_picture(path, f"{flag} picture")
            landmarks = find_face(image, mesh)
            if landmarks is None:
                log.info("%s: no face found, skipped", path)
                continue
            crops.append(aligned_crop(image, landmarks, ENCODER_SIZE))
    if not crops:
        raise BadInputError(
            f"no face was found in any of the {len(paths)} pictures of {flag} {paths[0].parent}; "
            "give pictures where a face fills a good part of the frame."
        )
    return np.concatenate(crops)


def encode(nets: LatentNets, crops: np.ndarray, runtime: Any, batch: int = BATCH) -> np.ndarray:
    """Aligned crops (N, 3, 256, 256) → W+ codes (N, L, D) float32, through the encoder's runtime (opened)."""
    array, device = placement(runtime, has_torch_module=True)
    out = []
    for start in range(0, len(crops), batch):
        x = np.ascontiguousarray(crops[start : start + batch], np.float32)
        w = nets.encode(x if array == "numpy" else torch.from_numpy(x).to(device))
        out.append(w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w))
    return np.concatenate(out).astype(np.float32)


def folder_codes(nets: LatentNets, folder: Path, flag: str, runtime: Any) -> np.ndarray:
    """A folder of example pictures → the W+ codes (N, L, D) of the faces in it."""
    return encode(nets, face_crops(pictures_in(folder, flag), flag), runtime)
