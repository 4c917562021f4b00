"""Artistic domains: adapted generators decode the same W+, layer swapping, weight mixing, live switching, import."""
# ruff: noqa: F811 - the shared fixtures are imported from latent_fixtures and named as arguments

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from latent_fixtures import (  # noqa: F401 - fixtures used by name
    CPU,
    TINY_CHANNELS,
    TINY_DIM,
    _unit,
    e4e_tiny,
    face_crop,
    latent,
    run,
)
from layouts import stylegan2_state

from henshin.cli.main import main
from henshin.engine.chains import ChainRequest, FilterGraph, apply_command
from henshin.errors import ModelError
from henshin.filters.base import parse_params
from henshin.filters.latent.domains import (
    combine,
    layer_resolution,
    load_domain,
    swap_layers,
)
from henshin.filters.latent.filter import LatentFilter
from henshin.filters.latent.params import LatentParams


@pytest.fixture(scope="module")
def ffhq_itself(e4e_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny e4e's own generator saved alone in rosinality's layout ({"g_ema", "latent_avg"})."""
    path = tmp_path_factory.mktemp("domains") / "ffhq-itself.pt"
    state = torch.load(e4e_tiny, weights_only=True)["state_dict"]
    torch.save({"g_ema": {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")},
                "latent_avg": torch.zeros(TINY_DIM)}, path)
    return path


@pytest.fixture(scope="module")
def toon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another generator in the same layout, saved as JoJoGAN saves its styles ({"g": state dict})."""
    path = tmp_path_factory.mktemp("domains") / "toon.pt"
    torch.save({"g": stylegan2_state(256, TINY_CHANNELS, n_mlp=2, style_dim=TINY_DIM, seed=70)}, path)
    return path


@pytest.fixture(scope="module")
def edit_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("domains") / "d.pt"
    torch.save(_unit(1, TINY_DIM, seed=71), path)
    return f"{path}:2"


def test_the_ffhq_generator_as_a_domain_reproduces_the_plain_filter_exactly(e4e_tiny: Path, ffhq_itself: Path,
                                                                            edit_file: str, face_crop: np.ndarray) -> None:
    for mode in ("delta", "replace"):
        plain = latent(e4e_tiny, edit=edit_file, mode=mode)
        as_domain = latent(e4e_tiny, edit=edit_file, mode=mode, domain=str(ffhq_itself))
        assert as_domain.decoder is not as_domain.nets.decoder
        assert np.array_equal(run(as_domain, face_crop), run(plain, face_crop))
        assert torch.equal(as_domain.last_latents[0], plain.last_latents[0])


@pytest.mark.parametrize("coarse_from", ["domain", "base"])
def test_layer_swapping_takes_exactly_the_layers_named_from_each_generator(e4e_tiny: Path, toon: Path,
                                                                          coarse_from: str) -> None:
    filt = latent(e4e_tiny, domain=str(toon), swap=32, swap_coarse=coarse_from)
    base, domain = filt.nets.generator.state_dict(), load_domain(toon).state_dict()
    swapped = filt.decoder.generator.state_dict()
    assert set(swapped) == set(base) and swapped.keys() == swap_layers(base, domain, 32, coarse_from).keys()
    coarse, fine = (domain, base) if coarse_from == "domain" else (base, domain)
    counts = {"coarse": 0, "fine": 0, "mapping": 0}
    for key, value in swapped.items():
        res = layer_resolution(key)
        want = base if res is None else coarse if res <= 32 else fine
        counts["mapping" if res is None else "coarse" if res <= 32 else "fine"] += 1
        assert torch.equal(value, want[key]), key
    assert min(counts.values()) > 0
    # 4-32 px: input, conv1, to_rgb1, convs 0-5, to_rgbs 0-2 and their noise; 64-256 px: the rest
    assert torch.equal(swapped["convs.5.conv.weight"], coarse["convs.5.conv.weight"])
    assert torch.equal(swapped["convs.6.conv.weight"], fine["convs.6.conv.weight"])
    assert torch.equal(swapped["noises.noise_6"], coarse["noises.noise_6"])  # 32 px
    assert torch.equal(swapped["noises.noise_7"], fine["noises.noise_7"])  # 64 px


def test_domain_mix_0_and_1_are_the_two_generators(e4e_tiny: Path, toon: Path, edit_file: str,
                                                   face_crop: np.ndarray) -> None:
    base, domain = load_domain(e4e_tiny), load_domain(toon)
    at_0, at_1 = combine(base, domain, 0, "domain", 0.0), combine(base, domain, 0, "domain", 1.0)
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in at_0.state_dict().items())
    assert all(torch.equal(v, domain.state_dict()[k]) for k, v in at_1.state_dict().items())
    half = combine(base, domain, 0, "domain", 0.5).state_dict()
    key = "convs.3.conv.weight"
    torch.testing.assert_close(half[key], (base.state_dict()[key] + domain.state_dict()[key]) / 2)
    assert torch.equal(half["style.1.weight"], base.state_dict()["style.1.weight"])  # W space: the base's
    outputs = {}
    for mix in ("0", "1"):
        outputs[mix] = run(latent(e4e_tiny, edit=edit_file, mode="replace", domain=str(toon), domain_mix=mix), face_crop)
    assert np.array_equal(outputs["0"], run(latent(e4e_tiny, edit=edit_file, mode="replace"), face_crop))
    assert np.array_equal(outputs["1"], run(latent(e4e_tiny, edit=edit_file, mode="replace", domain=str(toon)),
                                            face_crop))


def test_switching_domain_mid_clip_keeps_each_face_s_latent(e4e_tiny: Path, ffhq_itself: Path, toon: Path,
                                                            edit_file: str, face_crop: np.ndarray) -> None:
    """domains= loads both up front; `set domain 2` on the control line switches in place, smoothing and all."""
    params = {"weights": str(e4e_tiny), "edit": edit_file, "domains": f"{ffhq_itself},{toon}", "domain": "0"}
    graph = FilterGraph(ChainRequest("latent", {}, params), CPU)
    steady = latent(e4e_tiny, edit=edit_file, domains=f"{ffhq_itself},{toon}")
    try:
        filt = graph.default.links[0].filter
        built = {spec: len(d.runtimes) for spec, d in filt._decoders.items()}
        states = [filt.start_track(0), steady.start_track(0)]
        rng = np.random.default_rng(0)
        outs = []
        for i in range(6):
            crop = np.clip(face_crop + rng.normal(0, 0.05, face_crop.shape), -1, 1).astype(np.float32)
            if i == 3:
                apply_command(graph, "set domain 2")
            outs.append((run(filt, crop, [i / 24], [states[0]], i), run(steady, crop, [i / 24], [states[1]], i)))
            assert torch.equal(filt.last_bases[0], steady.last_bases[0]), f"frame {i}: the smoothed W+ moved"
        assert graph.default.links[0].filter is filt and filt.params.domain == "2"
        assert {spec: len(d.runtimes) for spec, d in filt._decoders.items()} == built  # nothing built at the switch
        assert states[0].encodes == 6
        assert all(np.array_equal(a, b) for a, b in outs[:3])
        assert not any(np.array_equal(a, b) for a, b in outs[3:])
        assert filt.mode == "replace" and filt.spec.mask == "crop"  # a domain: the whole crop, feathered
    finally:
        graph.close()


def test_a_generator_of_another_size_is_refused_naming_both_sizes(e4e_tiny: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.pt"
    torch.save({"g_ema": stylegan2_state(64, {4: 16, 8: 16, 16: 16, 32: 16, 64: 8}, n_mlp=2, style_dim=TINY_DIM)},
               small)
    with pytest.raises(ModelError, match=r"domain .*small.pt is a 64-px generator .* the encoder's generator is 256 px"):
        latent(e4e_tiny, domain=str(small))


def test_mode_and_paste_follow_the_domain_unless_set(e4e_tiny: Path, toon: Path) -> None:
    filt = latent(e4e_tiny, domains=str(toon))
    assert (filt.mode, filt.spec.mask) == ("delta", "face")
    filt.set_params(domain="1")
    assert (filt.mode, filt.spec.mask) == ("replace", "crop")
    filt.set_params(mode="delta", paste="face")
    assert (filt.mode, filt.spec.mask) == ("delta", "face")


def test_domain_parameters_are_checked(tmp_path: Path) -> None:
    from henshin.errors import InputNotFoundError, OptionError

    with pytest.raises(OptionError, match=r"names domain 2, but domains lists 1"):
        parse_params(LatentParams, {"domains": "jojogan-sketch", "domain": "2"})
    with pytest.raises(InputNotFoundError, match=r"domain generator .*none.pt does not exist"):
        parse_params(LatentParams, {"domain": str(tmp_path / "none.pt")})
    with pytest.raises(OptionError, match=r"parameter swap expects 0 \(off\) or a resolution"):
        parse_params(LatentParams, {"swap": "48"})
    params = parse_params(LatentParams, {"domains": "jojogan-sketch,jojogan-art", "domain": "2", "edit": "smile"})
    assert params.active_domain == "jojogan-art"
    assert LatentFilter.required_models(params) == ("e4e-ffhq", "e4e-directions", "jojogan-sketch", "jojogan-art")


# -- the registry and models import ------------------------------------------------------------------------------


def test_registry_lists_released_domains_with_their_licences() -> None:
    from henshin.models.store import default_registry

    for name in ("jojogan-sketch", "jojogan-art"):
        entry = default_registry().get(name)
        assert entry.filter == "latent" and "NVIDIA-NC" in entry.licence and entry.source.startswith("https://github.com/")
        assert entry.loader == "henshin.filters.latent.domains:load_ffhq_domain" and entry.check == ("g",)
        assert entry.files[0].url.startswith("https://drive.usercontent.google.com/")


FFHQ_NARROW = {4: 16, 8: 16, 16: 16, 32: 16, 64: 8, 128: 8, 256: 8, 512: 8, 1024: 8}  # the 1024-px layout, narrow


def test_models_import_stores_any_adapted_generator_under_a_name_of_ones_own(monkeypatch: pytest.MonkeyPatch,
                                                                            tmp_path: Path, capsys) -> None:
    from henshin.models import store

    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    mine = tmp_path / "downloaded.pt"
    torch.save({"g": stylegan2_state(1024, FFHQ_NARROW, n_mlp=1, style_dim=512, seed=72)}, mine)
    assert main(["models", "import", "my-toon", str(mine), "--generator"]) == 0
    stored = store.model_path("my-toon")
    assert stored.name == "my-toon.pt" and load_domain(stored).size == 1024
    entry = store.default_registry().get("my-toon")
    assert entry.filter == "latent" and entry.family == "stylegan2-domain"
    assert LatentFilter.required_models(parse_params(LatentParams, {"domain": "my-toon"})) == ("e4e-ffhq", "my-toon")
    assert main(["models", "verify", "my-toon"]) == 0
    capsys.readouterr()
    # a generator of another size is refused in one sentence naming both, and nothing is stored
    small = tmp_path / "small.pt"
    torch.save({"g_ema": stylegan2_state(256, TINY_CHANNELS, n_mlp=1, style_dim=512, seed=73)}, small)
    assert main(["models", "import", "small-toon", str(small), "--generator"]) == 2
    err = capsys.readouterr().err
    assert "256-px generator" in err and "1024 px" in err and "Traceback" not in err
    assert str(small) in err and "partial" not in err  # names the file the user gave
    assert "small-toon" not in store.default_registry().entries
    assert not (store.models_dir() / "small-toon" / "small-toon.pt").exists()
    assert not list((store.models_dir() / "small-toon").glob(".*"))  # no temporary file left
    assert main(["models", "import", "unknown-toon", str(mine)]) == 2
    assert "add --generator" in capsys.readouterr().err
