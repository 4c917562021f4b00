"""``henshin directions``: make latent directions of your own.

``fit NAME --positive DIR --negative DIR`` (or ``--latents POS NEG``) fits InterFaceGAN's linear
SVM between the W codes of faces with and without an attribute and stores its unit normal as
the user's direction NAME; then ``--filter latent --param edit=NAME:2`` uses it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import BadInputError, InputNotFoundError, OptionError

log = logging.getLogger("henshin")


def add_parser(sub: Any) -> None:
    """The ``directions`` command and its actions."""
    p = sub.add_parser("directions", help="make latent directions of your own (InterFaceGAN's SVM)")
    actions = p.add_subparsers(dest="directions_command", required=True, metavar="ACTION")
    q = actions.add_parser(
        "fit", help="fit a direction from example faces with and without an attribute"
    )
    q.add_argument(
        "name",
        metavar="NAME",
        help="the new direction's name (lower-case letters, digits, - and _); "
        "then --param edit=NAME:2",
    )
    q.add_argument(
        "--positive",
        type=Path,
        metavar="DIR",
        help="folder of pictures of faces WITH the attribute",
    )
    q.add_argument(
        "--negative", type=Path, metavar="DIR", help="folder of pictures of faces WITHOUT it"
    )
    q.add_argument(
        "--latents",
        type=Path,
        nargs=2,
        metavar=("POS", "NEG"),
        help="take codes directly instead of folders: .npy/.pt files of (N, 512) W or (N, L, 512) W+",
    )
    q.add_argument(
        "--layers",
        default="all",
        metavar="ROWS",
        help="the W+ rows averaged into the W code the SVM sees: all (default), coarse, middle, fine, A-B",
    )
    q.add_argument(
        "--weights",
        default="e4e-ffhq",
        metavar="NAME|PATH",
        help="e4e checkpoint that encodes the faces (registry name or path; default e4e-ffhq)",
    )
    q.add_argument(
        "--random-weights",
        action="store_true",
        help="seeded random e4e (meaningless directions; for tests and timing)",
    )
    q.add_argument(
        "--runtime", default="torch", metavar="NAME", help="runtime of the encoder (default torch)"
    )
    q.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help="cpu, cuda or cuda:N (default: CUDA when present)",
    )
    q.add_argument(
        "--overwrite", action="store_true", help="replace your own direction of the same name"
    )
    q.set_defaults(run=run_fit)
    add_channels_parser(actions)


def add_channels_parser(actions: Any) -> None:
    """``directions channels``: ATMGAN's channel scores for a local edit."""
    from henshin.filters.latent.attributes import ATTRIBUTES, LAYERS

    q = actions.add_parser(
        "channels",
        help="find the generator channels that drive an attribute in its region "
        "(a local edit for --param local=NAME:STRENGTH)",
    )
    q.add_argument(
        "name", metavar="NAME", help="the local edit's name (lower-case letters, digits, - and _)"
    )
    q.add_argument(
        "--attribute", required=True, choices=list(ATTRIBUTES), help="what the channels should move"
    )
    q.add_argument(
        "--layer", type=int, required=True, choices=list(LAYERS), help="feature map resolution"
    )
    q.add_argument(
        "--samples",
        type=int,
        default=200,
        metavar="N",
        help="generated faces to score on (default 200)",
    )
    q.add_argument("--top", type=int, default=8, metavar="K", help="channels kept (default 8)")
    q.add_argument("--seed", type=int, default=0, help="seed of the sampled faces (default 0)")
    q.add_argument(
        "--weights",
        default="e4e-ffhq",
        metavar="NAME|PATH",
        help="e4e checkpoint whose generator is scored (registry name or path; default e4e-ffhq)",
    )
    q.add_argument(
        "--random-weights", action="store_true", help="seeded random networks (they draw no faces)"
    )
    q.add_argument(
        "--device",
        default=None,
        metavar="DEV",
        help="cpu, cuda or cuda:N (default: CUDA when present)",
    )
    q.add_argument(
        "--overwrite", action="store_true", help="replace your own local edit of the same name"
    )
    q.set_defaults(run=run_channels)


def run_channels(args: argparse.Namespace) -> int:
    """Sample, measure, score; write ``NAME.local.json`` among the user's directions."""
    import torch

    from henshin.filters.latent.directions import USER_NAME, user_directions_dir
    from henshin.filters.latent.local import SUFFIX, sample_channels
    from henshin.filters.latent.networks import load_nets, random_nets
    from henshin.filters.reference import face_mesh, find_face
    from henshin.outputs import write_atomic

    if not USER_NAME.match(args.name):
        raise OptionError(
            f"a local edit's name is lower-case letters, digits, - and _, got {args.name!r}."
        )
    for flag, value, low in (("--samples", args.samples, 10), ("--top", args.top, 1)):
        if value < low:
            raise OptionError(f"{flag} expects a whole number of at least {low}, got {value}.")
    target = user_directions_dir() / f"{args.name}{SUFFIX}"
    check_targets(target, target, args.overwrite)
    if args.random_weights:
        nets = random_nets()
    else:
        from henshin.models.store import resolve_weights

        nets = load_nets(resolve_weights(args.weights))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    generator = nets.generator.to(device)
    with face_mesh() as mesh:
        edit = sample_channels(
            generator,
            args.attribute,
            args.layer,
            args.samples,
            args.top,
            lambda image: find_face(image, mesh),
            args.seed,
        )
    write_atomic(target, edit.to_json().encode(), f"local edit file {target}")
    best = ", ".join(f"{c} ({s:+.2f})" for c, s in zip(edit.channels, edit.scores, strict=True))
    print(
        f"{args.name}: {edit.faces} faces of {edit.samples} samples; {args.attribute} at {args.layer} px follows "
        f"channels {best}; saved {target}; use it with --filter latent --param local={args.name}:2"
    )
    return 0


def run_fit(args: argparse.Namespace) -> int:
    """Check everything, encode the examples, fit, write ``NAME.npy`` and ``NAME.json``."""
    from henshin.filters.latent.boundary import fit_boundary, mean_codes
    from henshin.filters.latent.directions import user_directions_dir

    check_name(args.name)
    check_sources(args)
    folder = user_directions_dir()
    target, info = folder / f"{args.name}.npy", folder / f"{args.name}.json"
    check_targets(target, info, args.overwrite)
    if args.latents:
        positive, negative = (
            load_codes(path, flag) for path, flag in zip(args.latents, ("POS", "NEG"), strict=True)
        )
        source = {"latents": [str(p) for p in args.latents]}
    else:
        positive, negative = encode_folders(args)
        source = {
            "positive": str(args.positive),
            "negative": str(args.negative),
            "weights": "random" if args.random_weights else args.weights,
        }
    if positive.shape[1:] != negative.shape[1:]:
        raise BadInputError(
            f"the positive codes are {positive.shape[1:]} per face and the negative ones "
            f"{negative.shape[1:]}; give codes of the same generator."
        )
    rows = chosen_rows(args.layers, positive)
    boundary = fit_boundary(mean_codes(positive, rows), mean_codes(negative, rows))
    doc = {
        "name": args.name,
        "method": "InterFaceGAN linear SVM (sklearn SVC, C by cross-validation)",
        **boundary.summary(),
        "layers": args.layers,
        **source,
    }
    write_direction(target, info, boundary.normal, doc)
    print(
        f"{args.name}: {boundary.positive} positive and {boundary.negative} negative faces, cross-validated "
        f"accuracy {boundary.accuracy:.1%} (C={boundary.c:g}, {boundary.folds} folds); saved {target}; "
        f"use it with --filter latent --param edit={args.name}:2"
    )
    return 0


def check_name(name: str) -> None:
    """A new direction's name: fits edit='s grammar and is not a released direction's."""
    from henshin.filters.latent.directions import USER_NAME, named

    if not USER_NAME.match(name):
        raise OptionError(
            f"a direction name is lower-case letters, digits, - and _ starting with a letter, got {name!r}."
        )
    if named(name) is not None:
        raise OptionError(f"{name} is a released direction's name; choose another name for yours.")


def check_sources(args: argparse.Namespace) -> None:
    """Either two folders of pictures or two code files, each present."""
    folders = (args.positive, args.negative)
    if args.latents and any(folders):
        raise OptionError(
            "give either --positive and --negative folders or --latents POS NEG, not both."
        )
    if args.latents:
        for path in args.latents:
            if not path.expanduser().is_file():
                raise InputNotFoundError(
                    f"latent codes file {path} does not exist; check the path given to --latents."
                )
        return
    if not all(folders):
        raise OptionError(
            "fitting a direction needs --positive DIR and --negative DIR (or --latents POS NEG)."
        )
    from henshin.filters.latent.examples import pictures_in

    for flag, path in (("--positive", args.positive), ("--negative", args.negative)):
        pictures_in(path, flag)  # a folder that holds pictures, refused here before any work


def check_targets(target: Path, info: Path, overwrite: bool) -> None:
    """The direction's two files: writable, and new unless --overwrite."""
    from henshin.outputs import check_writable, ensure_folder

    ensure_folder(target.parent, "the folder of your directions")
    for path in (target, info):
        if path.exists() and not overwrite:
            raise OptionError(
                f"you already have a direction {target.stem} ({path}); pass --overwrite to replace it "
                "or choose another name."
            )
        check_writable(path, overwrite=overwrite, what="direction file")


def load_codes(path: Path, flag: str) -> np.ndarray:
    """A codes file (N, D) or (N, L, D) as float32."""
    from henshin.errors import ModelError
    from henshin.models.checkpoints import load_checkpoint

    try:
        obj = load_checkpoint(path.expanduser())
    except ModelError as exc:
        raise BadInputError(
            f"{flag} file {path} could not be read as latent codes ({exc})."
        ) from None
    codes = obj.detach().cpu().numpy() if hasattr(obj, "detach") else obj
    if (
        not isinstance(codes, np.ndarray)
        or codes.ndim not in (2, 3)
        or not np.issubdtype(codes.dtype, np.floating)
    ):
        shape = getattr(codes, "shape", type(codes).__name__)
        raise BadInputError(
            f"{flag} file {path} should hold (N, 512) W or (N, L, 512) W+ codes, got {shape}."
        )
    return codes.astype(np.float32)


def encode_folders(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Both folders' faces, found first (so a short folder is refused before encoding), then encoded."""
    from henshin.filters.latent.boundary import check_counts
    from henshin.filters.latent.examples import encode, face_crops, pictures_in
    from henshin.filters.latent.networks import load_nets, random_nets
    from henshin.runtimes import RuntimeOptions
    from henshin.runtimes.options import check_available

    options = RuntimeOptions(runtime=args.runtime, device=args.device)
    check_available(options)
    pictures = [pictures_in(args.positive, "--positive"), pictures_in(args.negative, "--negative")]
    if args.random_weights:
        nets = random_nets()
    else:
        from henshin.models.store import resolve_weights

        nets = load_nets(resolve_weights(args.weights))
    crops = [
        face_crops(found, flag)
        for found, flag in zip(pictures, ("--positive", "--negative"), strict=True)
    ]
    check_counts(len(crops[0]), len(crops[1]))
    nets.open(options)
    log.info("encoding %d + %d faces with e4e", len(crops[0]), len(crops[1]))
    return encode(nets, crops[0], options), encode(nets, crops[1], options)


def chosen_rows(layers: str, codes: np.ndarray) -> range | None:
    """The W+ rows ``--layers`` names for these codes (None for plain W codes)."""
    from henshin.filters.latent.params import layer_rows, parse_layers

    spec = parse_layers(layers, "--layers")
    if codes.ndim == 2:
        if spec != "all":
            raise OptionError(
                f"--layers {layers} picks W+ rows, but the codes are plain W (N, D); leave --layers out."
            )
        return None
    return layer_rows(spec, codes.shape[1], "--layers")


def write_direction(target: Path, info: Path, normal: np.ndarray, doc: dict[str, Any]) -> None:
    """The normal in InterFaceGAN's .npy layout (1, D), then the JSON beside it; each complete or not at all."""
    from henshin.outputs import write_atomic

    buffer = io.BytesIO()
    np.save(buffer, normal, allow_pickle=False)
    write_atomic(target, buffer.getvalue(), f"direction file {target}")
    write_atomic(info, (json.dumps(doc, indent=2) + "\n").encode(), f"direction summary {info}")
