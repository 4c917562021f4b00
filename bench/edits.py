"""Edits from your own examples (issue 26): transfer ms per face at 720p, fit time per 100 faces.

    python -m bench edits [--quick]

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

from bench.harness import scenario, spread

REGIONS = ("lips", "eyes", "brows", "beard", "skin", "oval")
REPEATS = {True: 5, False: 30}


def _ms(fn: Callable[[], Any], repeats: int) -> dict[str, Any]:
    for _ in range(3):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return spread(runs, 2)


def _frame() -> tuple[np.ndarray, np.ndarray]:
    from henshin.engine.tracking import FaceTracker
    from henshin.samples import SampleSpec, background, motion, portrait, render

    spec = SampleSpec(width=1280, height=720, frames=1)
    affines, light = motion(spec)
    image = render(spec, affines, light, 0, portrait(), background(1280, 720))
    tracker = FaceTracker()
    try:
        (face,) = tracker(image)
    finally:
        tracker.close()
    return image, face.landmarks


def transfer_cases(quick: bool) -> list[dict[str, Any]]:
    """ms per face for each region, one 1280×720 frame."""
    from henshin.engine.composite import paste_patches
    from henshin.filters.reference import face_landmarks
    from henshin.filters.transfer.filter import TransferFilter, TransferParams
    from henshin.kernels.regions import shape_polygon
    from henshin.samples import portrait
    from henshin.types import FaceContext

    image, points = _frame()
    reference = portrait()
    lips = shape_polygon(face_landmarks(reference), "lips_outer")
    cv2.fillPoly(reference, [np.rint(lips).astype(np.int32)], (40, 60, 230))
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.png"
        cv2.imwrite(str(path), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR))
        for region in REGIONS:
            filt = TransferFilter(TransferParams(reference=str(path), region=region))
            faces = [FaceContext(0, landmarks=points)]

            def once(filt: TransferFilter = filt, faces: list = faces) -> None:
                paste_patches(
                    image, filt.edit(image, faces)
                )  # into the frame itself, as bench.geometry does

            cases.append(
                {"name": f"transfer {region} 1280x720 per face", "ms": _ms(once, REPEATS[quick])}
            )
    return cases


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


@scenario(
    "edits",
    "issue 26: transfer ms per face at 720p per region; directions fit: encode and SVM per 100 faces",
    default=False,
)
def edits(quick: bool) -> dict[str, Any]:
    """The transfer filter's per-face time and the fit's costs."""
    cases = transfer_cases(quick)
    cases += local_cases(quick)
    cases += fit_cases(quick)
    return {
        "title": "edits from your own examples: transfer per face, fitting directions",
        "cases": cases,
        "notes": [
            "transfer: one face, the filter's own work plus pasting its patch into the frame, "
            "median over repeats after 3 warm-up calls; tracking not included",
            "fit: random e4e weights in the released configuration (the cost does not depend on "
            "their values); the SVM on synthetic codes",
        ],
    }
