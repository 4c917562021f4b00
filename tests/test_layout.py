"""The layout: one package per filter family, the networks in henshin.nets, and the old
module paths still importable (for one release) as the very modules at their new homes."""

import importlib
import subprocess
import sys

import pytest

from henshin.filters import MOVED
from henshin.filters.base import BUILTIN, available_filters


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_home(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_names_of_the_three_modules_that_became_packages_still_import():
    from henshin.filters.gnr import load_gnr
    from henshin.filters.latent import apply_edit
    from henshin.filters.latent.maths import apply_edit as moved_edit
    from henshin.filters.style import NUM_STYLES, StyleFilter
    from henshin.filters.style.filter import StyleFilter as moved_style
    from henshin.nets.gnr import load_gnr as moved_gnr

    assert (load_gnr, apply_edit, StyleFilter) == (moved_gnr, moved_edit, moved_style)
    assert NUM_STYLES == 26
    with pytest.raises(ImportError):
        from henshin.filters.gnr import no_such_name  # noqa: F401


def test_every_builtin_filter_lives_in_its_family_package():
    filters = available_filters()
    for name, module in BUILTIN.items():
        parts = module.split(".")
        assert parts[:2] == ["henshin", "filters"] and len(parts) == 4, module  # henshin.filters.FAMILY.MODULE
        assert importlib.import_module(".".join(parts[:3])).__path__, module  # the family is a package
        assert filters[name].__module__ == module
    assert {m.split(".")[2] for m in BUILTIN.values()} >= {"style", "gnr", "latent", "geometry"}


def test_networks_are_in_nets_and_load_no_filter():
    import subprocess
    import sys

    code = ("import sys, henshin.nets.stylegan2, henshin.nets.e4e, henshin.nets.gnr, henshin.nets.fns, "
            "henshin.nets.multistyle, henshin.nets.layers; "
            "print(sorted(m for m in sys.modules if m.startswith(('henshin.filters', 'henshin.engine'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_command_line_parser_loads_no_heavy_library():
    """Every `henshin` command builds the whole parser first: torch alone costs 1.4 s of start-up."""
    code = (
        "import sys\n"
        "from henshin.cli.main import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'mediapipe', 'onnxruntime', 'ray', 'openvino') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
