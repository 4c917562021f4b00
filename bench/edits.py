"""Edits from your own examples (issue 26): transfer ms per face at 720p, fit time per 100 faces.

    python -m bench edits [--quick]
    python -m bench transfer [--quick]      # the transfer figures alone, with their parts

- Transfer: ``--filter transfer`` on one face of a 1280×720 frame (the sample clip's astronaut at
  the clip's default size, landmarks from the tracker once), per region: the filter's own work
  (mask, mesh flow, Lab harmonisation) plus pasting its patch, what ``convert`` spends in its
  filter and composite stages. The reference is the same face with its lips painted.
- Local edit: the latent filter's synthesis (the released 256-px generator, seeded random weights)
  of one face with and without a channel-local edit (8 channels at 32 px).
- Fit: ``henshin directions fit``'s two costs for 100 faces, e4e encoding (seeded random
  weights in the released IR-SE50 configuration, 18 rows; batches of 8, torch on this machine's
  device) and the SVM with C by 5-fold cross-validation on 100 + 100 codes of 512. Face finding
  (mediapipe, still-image mode) is timed per picture beside them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import sample_face, timed_ms
from bench.harness import scenario, spread

REGIONS = ("lips", "eyes", "brows", "beard", "skin", "oval")
REPEATS = {True: 5, False: 30}


def _ms(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    return spread(timed_ms(fn, repeats, warmup=3), 2)


def transfer_cases(quick: bool) -> list[dict[str, Any]]:
    """ms per face for each region, one 1280×720 frame; each case also times the filter's parts."""
    from henshin.filters.reference import face_landmarks
    from henshin.filters.transfer.filter import TransferFilter, TransferParams
    from henshin.kernels.regions import shape_polygon
    from henshin.samples import portrait

    image, face = sample_face(1280, 720)
    reference = portrait()
    lips = shape_polygon(face_landmarks(reference), "lips_outer")
    cv2.fillPoly(reference, [np.rint(lips).astype(np.int32)], (40, 60, 230))
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.png"
        cv2.imwrite(str(path), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR))
        for region in REGIONS:
            filt = TransferFilter(TransferParams(reference=str(path), region=region))
            whole, parts = _transfer_parts(filt, image, face.landmarks)
            cases.append(
                {
                    "name": f"transfer {region} 1280x720 per face",
                    "ms": _ms(whole, REPEATS[quick]),
                    "parts_ms": {k: _ms(fn, REPEATS[quick])["median"] for k, fn in parts.items()},
                }
            )
    return cases


def _transfer_parts(
    filt: Any, image: np.ndarray, points: np.ndarray
) -> tuple[Callable[[], Any], dict[str, Callable[[], Any]]]:
    """The filter's whole work on one face plus pasting its patch (as ``convert`` spends it in its
    filter and composite stages), and each of its parts alone: the region's box and feathered
    mask, the reference carried through the mesh, the colour harmonisation, the paste."""
    from henshin.engine.composite import paste_patches
    from henshin.filters.transfer.filter import carry, face_region, harmonise
    from henshin.types import FaceContext

    p, ref = filt.params, filt.reference
    faces = [FaceContext(0, landmarks=points)]
    roi, _ = face_region(points, p, image.shape[:2])
    pixels = carry(points, ref, roi)
    patches = filt.edit(image, faces)
    parts = {
        "mask": lambda: face_region(points, p, image.shape[:2]),
        "flow": lambda: carry(points, ref, roi),
        "colour": lambda: harmonise(pixels, image, points, ref, p.harmonize),
        "paste": lambda: paste_patches(image, patches),
    }
    return lambda: paste_patches(image, filt.edit(image, faces)), parts


def transfer_notes(cases: list[dict[str, Any]]) -> list[str]:
    """One line per region: its parts' medians."""
    return [
        f"{case['name']}: "
        + ", ".join(f"{k} {v:.2f}" for k, v in case["parts_ms"].items())
        + " ms (medians of each part alone)"
        for case in cases
    ]


def fit_cases(quick: bool) -> list[dict[str, Any]]:
    """Encode and SVM figures, scaled to 100 faces; face finding per picture."""
    import torch

    from henshin.filters.latent.boundary import fit_boundary
    from henshin.filters.latent.examples import encode
    from henshin.filters.latent.networks import random_nets
    from henshin.filters.reference import face_mesh, find_face
    from henshin.runtimes import RuntimeOptions
    from henshin.samples import portrait

    options = RuntimeOptions(runtime="torch")
    nets = random_nets()
    nets.open(options)
    n = 16 if quick else 100
    crops = np.random.default_rng(0).uniform(-1, 1, (n, 3, 256, 256)).astype(np.float32)
    encode(nets, crops[:8], options)  # warm-up
    start = time.perf_counter()
    with torch.no_grad():
        encode(nets, crops, options)
    encode_s = (time.perf_counter() - start) * 100 / n
    rng = np.random.default_rng(1)
    codes = rng.standard_normal((200, 512))
    codes[:100] += 0.3
    start = time.perf_counter()
    fit_boundary(codes[:100], codes[100:])
    svm_s = time.perf_counter() - start
    picture = portrait()
    with face_mesh() as mesh:
        find_ms = _ms(lambda: find_face(picture, mesh), 3 if quick else 10)
    return [
        {
            "name": "fit: e4e encoding per 100 faces",
            "ms": spread([encode_s * 1000], 0),
            "note": f"measured on {n} crops, scaled",
        },
        {
            "name": "fit: SVM (5 C values × 5 folds + refit) on 100 + 100 codes",
            "ms": spread([svm_s * 1000], 0),
        },
        {"name": "fit: face finding per 512x512 picture", "ms": find_ms},
    ]


def local_cases(quick: bool) -> list[dict[str, Any]]:
    """Synthesis ms of one W+ through the 256-px generator, plain and with a local edit of 8 channels at 32 px."""
    import torch

    from henshin.filters.latent.local import LocalEdit
    from henshin.filters.latent.networks import layer_channels, random_nets
    from henshin.runtimes import RuntimeOptions

    options = RuntimeOptions(runtime="torch", device="cpu")
    nets = random_nets()
    mask = np.zeros((32, 32))
    mask[18:26, 10:22] = 1.0
    edit = LocalEdit(
        "mouth_open",
        32,
        tuple(range(8)),
        (1.0,) * 8,
        (1.0,) * 8,
        (0.5,) * 8,
        tuple(map(tuple, mask.tolist())),
    )
    offset = edit.offset(2.0, layer_channels(nets.generator, 32))
    plain = nets.decoder.synthesis(options, 256)
    local = nets.decoder.local_synthesis(options, 256, 32, offset, "bench")
    w = np.ascontiguousarray(nets.generator.mean_latent(512).expand(1, nets.n_latent, -1).numpy())
    repeats = max(REPEATS[quick] // 2, 2)
    with torch.no_grad():
        return [
            {
                "name": "latent synthesis 256 px, one face, plain",
                "ms": _ms(lambda: plain(w), repeats),
            },
            {
                "name": "latent synthesis 256 px, one face, local edit (8 channels at 32 px)",
                "ms": _ms(lambda: local(w), repeats),
            },
        ]


TRANSFER_NOTE = (
    "transfer: one face, the filter's own work plus pasting its patch into the frame (a copy of "
    "the frame, as the compositor makes), median over repeats after 3 warm-up calls; tracking "
    "not included; parts: mask = region box and feathered mask, flow = the reference carried "
    "through the mesh, colour = Lab harmonisation, paste = the patch blended into a frame copy"
)


@scenario(
    "transfer",
    "issue 26: --filter transfer ms per face at 720p for every region, and its parts",
    default=False,
)
def transfer(quick: bool) -> dict[str, Any]:
    """The transfer filter's per-face time per region (the first part of ``edits``)."""
    cases = transfer_cases(quick)
    return {
        "title": "transfer per face at 720p, every region",
        "cases": cases,
        "notes": [TRANSFER_NOTE, *transfer_notes(cases)],
    }


@scenario(
    "edits",
    "issue 26: transfer ms per face at 720p per region; directions fit: encode and SVM per 100 faces",
    default=False,
)
def edits(quick: bool) -> dict[str, Any]:
    """The transfer filter's per-face time and the fit's costs."""
    cases = transfer_cases(quick)
    notes = transfer_notes(cases)
    cases += local_cases(quick)
    cases += fit_cases(quick)
    return {
        "title": "edits from your own examples: transfer per face, fitting directions",
        "cases": cases,
        "notes": [
            TRANSFER_NOTE,
            *notes,
            "fit: random e4e weights in the released configuration (the cost does not depend on "
            "their values); the SVM on synthetic codes",
        ],
    }
