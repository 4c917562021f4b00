"""The teacher: a filter chain built by the engine, checked to work on face crops, with one fixed look.

What the student must copy from it at run time is read here too: the first crop link's
framing (aligned FFHQ square or the upright box, and its scale), the last one's mask
mode and border, and how strongly the chain's last link is mixed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from henshin.engine.chains import Chain, ChainRequest, FilterGraph, chain_names, split_params
from henshin.errors import OptionError
from henshin.filters.base import filter_class, param_names
from henshin.outputs import write_atomic
from henshin.types import FilterSpec

LOOK_FILE = "look.npy"  # the fixed GANs N' Roses style code, in the work folder


@dataclass
class Teacher:
    """The built teacher graph and what the student inherits from it."""

    graph: FilterGraph
    params: dict[str, str]
    notes: list[str] = field(default_factory=list)

    @property
    def chain(self) -> Chain:
        return self.graph.default

    @property
    def first(self) -> FilterSpec:
        """The spec of the first crop link: the crops' framing and size."""
        return self.chain.crop_links[0].filter.spec

    @property
    def last(self) -> FilterSpec:
        """The spec of the last crop link: what its output is, and how it is pasted."""
        return self.chain.crop_links[-1].filter.spec

    @property
    def opacity(self) -> float:
        """How strongly the compositor mixes the last link's output in (its ``strength``)."""
        return float(self.chain.crop_links[-1].filter.opacity)

    @property
    def mask(self) -> str:
        """The student's mask mode: the last crop link's, or the whole crop where a landmark link reshapes the face."""
        return "crop" if self.chain.landmark_links else self.last.mask

    def framing(self) -> dict[str, Any]:
        """Crop framing and pasting, as the student's metadata records them."""
        first = self.first
        return {
            "crop": first.crop,
            "box_scale": first.box_scale,
            "mask": self.mask,
            "border": self.last.border,
        }

    def close(self) -> None:
        self.graph.close()


def check_chain(text: str, params: dict[str, str]) -> list[str]:
    """The chain's names; one sentence for a chain that is not a face-crop chain (before anything is built)."""
    names = chain_names(text)
    if "student" in names:
        raise OptionError(f"the chain {text} has a student in it; distil the teacher chain itself.")
    per_filter, _ = split_params([names], params)
    for name in names:
        scope = per_filter[name].get("scope", "face")
        if scope != "face":
            raise OptionError(
                f"the chain {text} filters whole frames (scope={scope}); distill learns face crops "
                "only: use scope=face (whole-frame students are later work)."
            )
    gnr = per_filter.get("gnr", {})
    if "gnr" in names and gnr.get("morph", "-1").strip() not in ("-1", ""):
        raise OptionError(
            "gnr's morph changes each face's look over time; a student learns one fixed look: "
            "drop --param morph."
        )
    return names


def build_teacher(
    text: str, params: dict[str, str], runtime: Any, folder: Path, say: Callable[[str], None]
) -> Teacher:
    """The teacher graph (``params`` as given, with the changes a student needs, each said)."""
    names = check_chain(text, params)
    params, notes = _steady(names, dict(params))
    graph = FilterGraph(ChainRequest(text, {}, params), runtime)
    try:
        if not graph.default.crop_links:
            raise OptionError(
                f"the chain {text} has no filter that works on face crops (only landmark edits, "
                "which are cheap already); give a chain with style, gnr or latent in it."
            )
        fixed = _fixed_look(graph, params, folder)
    except BaseException:
        graph.close()
        raise
    if fixed is not None:
        graph.close()
        params, note = fixed
        notes.append(note)
        graph = FilterGraph(ChainRequest(text, {}, params), runtime)
    for note in notes:
        say(note)
    return Teacher(graph, params, notes)


def _steady(names: list[str], params: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The teacher runs without temporal blending: augmented draws of one frame must not be blended together."""
    notes = []
    for name in names:
        if "temporal" not in param_names(filter_class(name).Params):
            continue
        for key in ("temporal", f"{name}.temporal"):
            value = params.pop(key, None)
            if value not in (None, "0", "0.0"):
                notes.append(
                    f"the teacher runs with {name}'s temporal off (it blends frames, not pairs); "
                    f"give --param temporal={value} to the student at run time instead."
                )
    return params, notes


def _fixed_look(
    graph: FilterGraph, params: dict[str, str], folder: Path
) -> tuple[dict[str, str], str] | None:
    """gnr without a fixed style gives each face its own look: the student learns face 0's, stored as a style file."""
    link = next((link for link in graph.default.crop_links if link.name == "gnr"), None)
    if link is None or link.filter.params.reference or link.filter.params.style_file:
        return None
    seed = link.filter.params.seed
    code = np.asarray(link.filter.code_for(0), np.float32)
    path = folder / LOOK_FILE
    import io

    buffer = io.BytesIO()
    np.save(buffer, code)
    write_atomic(path, buffer.getvalue(), "the student's fixed look")
    params = {k: v for k, v in params.items() if k not in ("seed", "gnr.seed")}
    params["gnr.style_file"] = str(path)
    note = (
        f"gnr gives each face its own look; a student learns one: seed {seed} (face 0's look); "
        "give --param seed=N, reference= or style_file= to choose another."
    )
    return params, note
