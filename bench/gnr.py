"""GANs N' Roses: the network per runtime and ``henshin convert --filter gnr`` at 720p.

    python -m bench gnr [--quick] [--out DIR]

Seeded random weights in the released configuration (``--param random_weights=1``): what
the filter costs does not depend on its weights' values.

- network: ms per face at batch 1, 4 and 8 (quick: 1 and 4) for each runtime here, and FLOPs
  per face, from ``bench.networks`` (content encoder + decoder from a style code);
- end to end: ``henshin convert`` of a 1280×720 clip with one face, per runtime, faces of 4
  frames batched through the network (the default), fps over the pipeline's wall time and ms
  per frame in each stage.

``torch.compile`` is left out: it did not finish compiling this network within 240 s on an
H100 (bench/figures/networks.md); time it alone with ``python -m bench.networks --only gnr``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.clips import Clip, make_clip
from bench.convert import offline_summary
from bench.harness import measured, repeat, scenario
from bench.runtimes import configurations
from henshin.engine.convert import ConvertJob, convert
from henshin.engine.offline import OfflineConfig
from henshin.runtimes import RuntimeOptions

FRAMES = {True: 8, False: 30}  # frames of the 720p clip (quick, full): about 2 fps on a 2-core CPU
PARAMS = {"random_weights": "1"}


def runtimes() -> list[tuple[str, RuntimeOptions]]:
    """Every runtime configuration this machine has, torch.compile excepted (see the module's note)."""
    return [(label, options) for label, options in configurations() if not options.compile]


def network_cases(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, str]], dict[str, Any]]:
    """ms per face per runtime and batch, and FLOPs per face, as bench cases (and the raw result)."""
    from bench.networks import bench_cases, measure

    result = measure(quick, only=("gnr",), runtimes=tuple(label for label, _ in runtimes()))
    cases, skipped = bench_cases(result, prefix=lambda r: "network")
    return cases, skipped, result


def convert_run(clip: Clip, out: Path, options: RuntimeOptions) -> Callable[[], dict[str, Any]]:
    """One ``henshin convert --filter gnr --param random_weights=1`` of ``clip`` under ``options``."""

    def once() -> dict[str, Any]:
        job = ConvertJob(clip.path, out, filter="gnr", params=dict(PARAMS), overwrite=True, runtime=options,
                         scheduling=OfflineConfig(progress=False, batch_frames=4))
        return convert(job).to_json()

    return measured(once)


@scenario("gnr", "GANs N' Roses: ms per face per runtime at batch 1/4/8, FLOPs per face, convert fps at 720p",
          default=False)
def gnr(quick: bool) -> dict[str, Any]:
    """The network alone, then whole conversions, under each runtime."""
    cases, skipped, raw = network_cases(quick)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = make_clip(work, 1280, 720, FRAMES[quick])
        for label, options in runtimes():
            options = dataclasses.replace(options, cache_dir=work / "cache")
            out = work / "gnr.mp4"
            try:
                runs = repeat(convert_run(clip, out, options), quick)
            except Exception as exc:  # noqa: BLE001 - a runtime that fails here is reported, the rest go on
                skipped.append({"case": f"convert {label}", "reason": str(exc).splitlines()[0]})
                continue
            case = offline_summary(clip, out, runs, "gnr", PARAMS)
            case["name"] = f"convert {label} {clip.label} b4"
            case["runtime"] = label
            cases.append(case)
    notes = ["seeded random weights in the released configuration (Generator(256, num_down=4, latent_dim=8, "
             "n_mlp=5, n_res=1)); speed does not depend on the weights' values",
             f"network: ms per face, FLOPs per face {raw['flops_per_face']['gnr'] / 1e9:.1f} G "
             "(FlopCounterMode, 2 per multiply-add)",
             "convert: one face per frame, faces of 4 frames per network call; fps = frames / pipeline wall time",
             "torch.compile left out: it did not finish compiling GNR within 240 s on an H100"]
    return {"title": "GANs N' Roses: network per runtime, convert at 1280x720", "cases": cases,
            "skipped": skipped, "notes": notes}

