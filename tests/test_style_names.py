"""The built-in styles by name: a name selects what its number selects, everywhere a style is chosen."""

from __future__ import annotations

import re

import numpy as np
import pytest

from henshin.cli.main import main
from henshin.engine.chains import ChainRequest, FilterGraph, apply_command
from henshin.errors import OptionError
from henshin.filters.base import parse_params
from henshin.filters.style.filter import STYLE_NAMES, StyleFilter, StyleParams, style_weights


def test_every_style_has_one_short_distinct_name():
    assert len(STYLE_NAMES) == 26 and len(set(STYLE_NAMES)) == 26
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", name) and len(name) <= 14 for name in STYLE_NAMES)


@pytest.mark.parametrize(
    ("name", "number"), [("ochre-wash", 0), ("oil-paint", 5), ("pastel", 24), ("Mosaic", 25)]
)
def test_a_name_and_its_number_select_the_same_style(name, number):
    by_name = parse_params(StyleParams, {"style": name})
    assert by_name == parse_params(StyleParams, {"style": str(number)})
    assert by_name.style == number
    np.testing.assert_array_equal(style_weights(by_name), np.eye(26, dtype=np.float32)[number])


def test_a_named_style_filters_a_face_exactly_as_its_number():
    crops = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    outputs = []
    for style in ("pen-and-ink", "11"):
        filt = StyleFilter(parse_params(StyleParams, {"style": style, "size": "64"}))
        try:
            outputs.append(np.asarray(filt.process(crops.copy(), [])))
        finally:
            filt.close()
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert np.abs(outputs[0] - crops).mean() > 0.02  # a style was applied, not the input returned


def test_a_blend_by_names_equals_the_blend_by_numbers():
    named = style_weights(parse_params(StyleParams, {"blend": "fauve:0.25, pastel:0.75"}))
    numbered = style_weights(parse_params(StyleParams, {"blend": "3:0.25,24:0.75"}))
    np.testing.assert_array_equal(named, numbered)
    assert named[3] == pytest.approx(0.25) and named[24] == pytest.approx(0.75)


@pytest.mark.parametrize(
    "raw", [{"style": "glitter"}, {"blend": "glitter:1"}, {"blend": "pastel:0.5,glitter:0.5"}]
)
def test_an_unknown_name_is_one_sentence_listing_the_names(raw):
    with pytest.raises(OptionError) as caught:
        parse_params(StyleParams, raw)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("unknown style 'glitter'")
    assert message.endswith(", ".join(STYLE_NAMES) + ".")


def test_a_name_given_from_python_is_its_number():
    assert StyleParams(style="crosshatch").style == 19


def test_the_default_style_keeps_the_face_a_painting():
    assert STYLE_NAMES[StyleParams().style] == "oil-paint"


def test_henshin_filters_lists_every_style_by_number_and_name(capsys):
    assert main(["filters"]) == 0
    out = capsys.readouterr().out
    assert "style = 5 (oil-paint); by number or name:" in out
    for number, name in enumerate(STYLE_NAMES):
        assert re.search(rf"\b{number} {name}\b", out), name


def test_stepping_the_style_names_the_new_one():
    graph = FilterGraph(ChainRequest("style", params={"style": "pastel"}))
    try:
        assert graph.label == "style 24 pastel"
        apply_command(graph, "step style 1")
        assert graph.label == "style 25 mosaic"
        apply_command(graph, "set blend oil-paint:1,3:1")
        assert graph.label == "style blend oil-paint:1,3:1"
        apply_command(graph, "off")
        assert graph.label == "off"
    finally:
        graph.close()


def test_henshin_filters_lists_a_filter_without_a_docstring(capsys, monkeypatch):
    from dataclasses import dataclass

    from henshin.filters.base import FILTERS, Filter

    @dataclass(frozen=True)
    class BareParams:
        size: int = 64

    class Bare(Filter):
        name, Params = "test-bare", BareParams

        def process(self, batch, faces):
            return batch

    monkeypatch.setitem(FILTERS, "test-bare", Bare)
    assert main(["filters"]) == 0
    assert "test-bare: \n  size = 64" in capsys.readouterr().out
