"""Face filters: one package per family, all behind ``henshin.filters.base.Filter``.

``style/`` (built-in styles, any picture as a style, fast neural style), ``gnr/``
(GANs N' Roses), ``latent/`` (StyleGAN latent edits and domains), ``geometry/`` (warp,
tint), ``transfer/`` (a reference face's region carried along the mesh). The torch networks live in ``henshin.nets``.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

from henshin.filters.base import FILTERS, Filter, create_filter, register

__all__ = ["FILTERS", "Filter", "create_filter", "register"]

# Modules that moved when the families became packages. Their old paths stay importable for
# one release (user registries name loaders by path, e.g. ``henshin.filters.stylegan2:...``):
# the old name is the new module itself, so attributes and monkeypatching agree.
MOVED = {
    "henshin.filters.arbitrary": "henshin.filters.style.arbitrary",
    "henshin.filters.fns": "henshin.filters.style.fns",
    "henshin.filters.gnr_filter": "henshin.filters.gnr.filter",
    "henshin.filters.latent_directions": "henshin.filters.latent.directions",
    "henshin.filters.latent_domains": "henshin.filters.latent.domains",
    "henshin.filters.latent_edit": "henshin.filters.latent.filter",
    "henshin.filters.latent_nets": "henshin.filters.latent.networks",
    "henshin.filters.latent_params": "henshin.filters.latent.params",
    "henshin.filters.latent_plan": "henshin.filters.latent.plan",
    "henshin.filters.latent_state": "henshin.filters.latent.state",
    "henshin.filters.warp": "henshin.filters.geometry.warp",
    "henshin.filters.tint": "henshin.filters.geometry.tint",
    "henshin.filters.layers": "henshin.nets.layers",
    "henshin.filters.stylegan2": "henshin.nets.stylegan2",
    "henshin.filters.e4e": "henshin.nets.e4e",
    "henshin.filters.multistyle": "henshin.nets.multistyle",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds a moved module under its old name and hands back the module at its new one."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        pass  # the new module has run already


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
