"""Runtimes: how a filter's network executes — torch, ONNX Runtime or TensorRT.

Every runtime is built from the same description (a torch module or an ONNX
file, the per-sample input shapes, a device and a precision) and is called the
same way: positional arrays or tensors with a leading batch axis in, one array
or tensor out, of the same kind as the first input. ``auto`` picks TensorRT when
it is installed and a GPU is present, then torch on CUDA, then ONNX Runtime on
the CPU. Exported ONNX graphs and TensorRT plans are cached on disk under a key
that changes with the weights, the shapes, the precision and the software.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from henshin.errors import ModelError, OptionError, RuntimeUnavailableError

log = logging.getLogger("henshin")

RuntimeName = Literal["auto", "torch", "onnxruntime", "tensorrt"]
RUNTIMES = ("auto", "torch", "onnxruntime", "tensorrt")
Precision = Literal["fp32", "fp16", "bf16"]


class Runtime(Protocol):
    """A compiled network: batched inputs in, one batched output out."""

    name: str

    def __call__(self, *inputs: Any) -> Any: ...

    def accepts(self, sample: tuple[int, ...]) -> bool:
        """Whether it runs first inputs of this per-sample shape (C, H, W), not only the one it was built for."""
        ...


@dataclass(frozen=True)
class NetworkSpec:
    """What a runtime needs to know about a network.

    module: the torch module (None for an ONNX-only network); onnx: a ready ONNX
    file (exported from ``module`` into the cache when None); inputs: name and
    per-sample shape of each input, batch axis excluded, None for an input that
    has no batch axis (a style-weight vector); batched: which inputs carry the
    batch axis; key: a short name for logs and cache files.
    """

    key: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    module: Any = None
    onnx: Path | None = None
    batched: tuple[bool, ...] = ()
    output: str = "output"

    def is_batched(self, i: int) -> bool:
        return self.batched[i] if self.batched else True


@dataclass
class RuntimeOptions:
    """How to run: which runtime, where, at what precision."""

    runtime: RuntimeName = "auto"
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: the runtime's best
    precision: Precision | None = None  # None: fp16 on CUDA, fp32 on the CPU
    max_batch: int = 8
    compile: bool = False  # torch.compile
    cuda_graphs: bool = False
    threads: int = 0  # ONNX Runtime CPU threads (0: all cores)
    cache_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {self.runtime!r}.")
        if self.precision not in (None, "fp32", "fp16", "bf16"):
            raise OptionError(f"--precision expects fp32, fp16 or bf16, got {self.precision!r}.")
        if self.max_batch < 1:
            raise OptionError(f"--max-batch expects a whole number of at least 1, got {self.max_batch}.")
        if (self.compile or self.cuda_graphs) and self.runtime in ("onnxruntime", "tensorrt"):
            flag = "--compile" if self.compile else "--cuda-graphs"
            raise OptionError(f"{flag} applies to the torch runtime; drop it or use --runtime torch.")

    def build(self, key: str, inputs: Sequence[tuple[str, tuple[int, ...]]], *, module: Any = None,
              onnx: Path | None = None, batched: Sequence[bool] = ()) -> Runtime:
        """Build a runtime for one network; what filters call (they never import the engine)."""
        spec = NetworkSpec(key=key, inputs=tuple((n, tuple(s)) for n, s in inputs), module=module,
                           onnx=onnx, batched=tuple(batched))
        return build_runtime(spec, self)


# -- what is available ------------------------------------------------------------


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    if not has_module("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's execution providers in this installation."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_runtime(requested: RuntimeName, has_torch_module: bool, *, tensorrt: bool | None = None,
                   cuda: bool | None = None) -> str:
    """Resolve ``auto`` (and check an explicit choice) for one network.

    A network with no torch module (ONNX-only) can run under ONNX Runtime or TensorRT.
    """
    if requested not in RUNTIMES:
        raise OptionError(f"--runtime expects one of {', '.join(RUNTIMES)}, got {requested!r}.")
    tensorrt = has_module("tensorrt") if tensorrt is None else tensorrt
    cuda = cuda_available() if cuda is None else cuda
    if requested == "auto":
        if tensorrt and cuda:
            return "tensorrt"
        if cuda and has_torch_module:
            return "torch"
        return "onnxruntime"
    if requested == "tensorrt":
        if not tensorrt:
            raise RuntimeUnavailableError("TensorRT is not installed; install it with: pip install 'henshin[tensorrt]'.")
        if not cuda:
            raise RuntimeUnavailableError("TensorRT needs a CUDA GPU and torch with CUDA, and none was found; use --runtime onnxruntime.")
    if requested == "torch":
        if not has_module("torch"):
            raise RuntimeUnavailableError("torch is not installed; install it with: pip install 'henshin[torch]'.")
        if not has_torch_module:
            raise OptionError("this filter's network is an ONNX graph only; use --runtime onnxruntime or tensorrt.")
    return requested


def build_runtime(spec: NetworkSpec, options: RuntimeOptions) -> Runtime:
    """Build the runtime ``options`` ask for (``auto`` resolved), ready to call."""
    name = choose_runtime(options.runtime, spec.module is not None)
    if name == "torch":
        runtime: Runtime = TorchRuntime(spec, options)
    elif name == "tensorrt":
        from henshin.engine.tensorrt import TensorRTRuntime

        runtime = TensorRTRuntime(spec, options, onnx_file(spec, options))
    else:
        runtime = OnnxRuntime(spec, options, onnx_file(spec, options))
    _announce(f"runtime for {spec.key}: {describe(runtime)}"
              + (" (chosen by auto)" if options.runtime == "auto" else ""))
    return runtime


_ANNOUNCED: set[str] = set()


def _announce(message: str) -> None:
    """Log a line once per process (the runtime choice is printed once at start)."""
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        log.info("%s", message)


def describe(runtime: Runtime) -> str:
    """One line: the runtime, its device and precision."""
    if isinstance(runtime, OnnxRuntime):
        return f"onnxruntime ({', '.join(p.removesuffix('ExecutionProvider') for p in runtime.providers)}, {runtime.threads} threads)"
    device = getattr(runtime, "device", "?")
    return f"{runtime.name} ({device}, {getattr(runtime, 'precision', 'fp32')})"


# -- cache keys ---------------------------------------------------------------------


def weights_hash(module: Any) -> str:
    """SHA-256 over a module's parameters and buffers (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(spec: NetworkSpec, **parts: Any) -> str:
    """A short key for a compiled artefact: the weights plus everything that shapes it."""
    weights = weights_hash(spec.module) if spec.module is not None else file_hash(spec.onnx)
    doc = json.dumps({"weights": weights, "inputs": spec.inputs, "batched": spec.batched, **parts},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode()).hexdigest()[:24]


def cache_dir(options: RuntimeOptions) -> Path:
    """Where compiled artefacts live: ``<henshin cache>/compiled`` (``$HENSHIN_HOME`` or the user cache dir)."""
    if options.cache_dir is not None:
        root = options.cache_dir
    else:
        from henshin.engine.models import cache_root

        root = cache_root() / "compiled"
    root.mkdir(parents=True, exist_ok=True)
    return root


# -- ONNX export ----------------------------------------------------------------------


def onnx_file(spec: NetworkSpec, options: RuntimeOptions) -> Path:
    """The network as an ONNX file: the given one, or an export cached by weights and shapes."""
    if spec.onnx is not None:
        return Path(spec.onnx)
    if spec.module is None:
        raise ModelError(f"network {spec.key} has neither a torch module nor an ONNX file.")
    path = cache_dir(options) / f"{spec.key}-{cache_key(spec, opset=ONNX_OPSET)}.onnx"
    meta = {"network": spec.key, "opset": ONNX_OPSET, "inputs": spec.inputs}
    if read_cached(path, meta) is not None and _onnx_loads(path):
        return path
    if path.exists():
        log.warning("cached ONNX graph %s is damaged or stale; exporting it again.", path)
        path.unlink()
    log.info("exporting %s to ONNX (once; cached in %s)", spec.key, path.parent)
    buffer = io.BytesIO()
    export_onnx(spec, buffer)
    write_cached(path, buffer.getvalue(), meta)
    return path


def read_cached(path: Path, meta: dict[str, Any]) -> bytes | None:
    """The bytes of a cached artefact, or None when it is missing, damaged or stale.

    Each artefact has a JSON record beside it with the SHA-256 of its bytes and
    what it was built for; a file whose bytes or record do not match is deleted,
    so a truncated write or a file from other software is rebuilt, never used.
    """
    record = path.with_name(path.name + ".json")
    if not path.exists():
        return None
    try:
        data = path.read_bytes()
        doc = json.loads(record.read_text())
        ok = doc.get("sha256") == hashlib.sha256(data).hexdigest() and doc.get("meta") == _jsonable(meta)
    except (OSError, ValueError):
        ok = False
    if ok:
        return data
    log.warning("cached %s does not match its record; rebuilding it.", path.name)
    for stale in (path, record):
        stale.unlink(missing_ok=True)
    return None


def write_cached(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    """Store an artefact and its record, each under a temporary name first."""
    record = path.with_name(path.name + ".json")
    for target, payload in ((path, data), (record, json.dumps(
            {"sha256": hashlib.sha256(data).hexdigest(), "meta": _jsonable(meta)}, indent=1).encode())):
        tmp = target.with_name(target.name + ".partial")
        tmp.write_bytes(payload)
        os.replace(tmp, target)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


ONNX_OPSET = 17


def export_onnx(spec: NetworkSpec, target: Path | io.BytesIO) -> None:
    """Export ``spec.module`` as ONNX (opset 17, batch axis dynamic) to a path or a buffer."""
    import torch

    module = spec.module.eval().float().cpu()
    args = tuple(_example(shape, spec.is_batched(i)) for i, (_, shape) in enumerate(spec.inputs))
    names = [name for name, _ in spec.inputs]
    dynamic = {name: {0: "batch"} for i, name in enumerate(names) if spec.is_batched(i)}
    dynamic[spec.output] = {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, args, buffer, input_names=names, output_names=[spec.output],
                          dynamic_axes=dynamic, opset_version=ONNX_OPSET, dynamo=False)
    if isinstance(target, io.BytesIO):
        target.write(buffer.getvalue())
        return
    tmp = Path(target).with_name(Path(target).name + ".partial")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, target)


def _example(shape: tuple[int, ...], batched: bool) -> Any:
    import torch

    return torch.rand((2, *shape) if batched else shape)


def _onnx_loads(path: Path) -> bool:
    try:
        import onnxruntime as ort

        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return True
    except Exception:
        return False


def parity(spec: NetworkSpec, runtime: Runtime, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between ``runtime`` and the eager fp32 torch module on random inputs."""
    import torch

    rng = np.random.default_rng(seed)
    inputs = [rng.random((batch, *shape) if spec.is_batched(i) else shape, dtype=np.float32)
              for i, (_, shape) in enumerate(spec.inputs)]
    with torch.inference_mode():
        want = spec.module.eval().float().cpu()(*[torch.from_numpy(x) for x in inputs]).numpy()
    got = runtime(*inputs)
    got = got.detach().float().cpu().numpy() if hasattr(got, "detach") else np.asarray(got, np.float32)
    return float(np.abs(got - want).max())


# -- torch ------------------------------------------------------------------------------


class TorchRuntime:
    """Eager torch, channels-last; fp16/bf16 on CUDA; optional torch.compile and CUDA graphs."""

    name = "torch"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions) -> None:
        import torch

        self.spec = spec
        self.device = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError("CUDA was asked for but torch sees no GPU; use --runtime onnxruntime.")
        precision = options.precision or ("fp16" if self.device.type == "cuda" else "fp32")
        if precision != "fp32" and self.device.type != "cuda":
            raise OptionError(f"precision {precision} needs a CUDA device; use fp32 on the CPU.")
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        self.precision = precision
        # A copy: moving or casting in place would change the caller's module under it.
        module = copy.deepcopy(spec.module).eval().to(self.device, self.dtype)
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.module = torch.compile(module, mode="max-autotune-no-cudagraphs") if options.compile else module
        self._graphs: dict[tuple, Any] = {}
        self._use_graphs = options.cuda_graphs and self.device.type == "cuda"

    def __call__(self, *inputs: Any) -> Any:
        import torch

        as_numpy = isinstance(inputs[0], np.ndarray)
        tensors = [self._tensor(x) for x in inputs]
        with torch.inference_mode():
            out = self._graphed(tensors) if self._use_graphs else self.module(*tensors)
        out = out.float()
        return out.cpu().numpy() if as_numpy else out

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return True  # eager torch (compiled or graphed: per shape, inside) runs any size

    def _tensor(self, x: Any) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
        t = t.to(self.device, self.dtype, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and self.device.type == "cuda" else t

    def _graphed(self, tensors: list[Any]) -> Any:
        """Replay a CUDA graph captured for these shapes (captured on first sight)."""
        import torch

        key = tuple(tuple(t.shape) for t in tensors)
        if key not in self._graphs:
            static_in = [t.clone() for t in tensors]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up before capture, as torch.cuda.graphs requires
                    self.module(*static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.module(*static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        for dst, src in zip(static_in, tensors, strict=True):
            dst.copy_(src)
        graph.replay()
        return static_out.clone()


# -- ONNX Runtime -------------------------------------------------------------------------


class OnnxRuntime:
    """ONNX Runtime: CPU with a thread per core, or the CUDA provider where installed."""

    name = "onnxruntime"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions, path: Path) -> None:
        import onnxruntime as ort

        self.spec, self.path = spec, path
        wants_cuda = (options.device or "").startswith("cuda") or (options.device is None and cuda_available())
        providers = ["CPUExecutionProvider"]
        if wants_cuda:
            if "CUDAExecutionProvider" in onnxruntime_providers():
                providers.insert(0, "CUDAExecutionProvider")
            elif options.device:
                raise RuntimeUnavailableError(
                    "this ONNX Runtime has no CUDA provider; install it with: pip uninstall onnxruntime && pip install onnxruntime-gpu."
                )
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.threads = options.threads or os.cpu_count() or 1
        so.intra_op_num_threads = self.threads
        # The pipeline's other stages (decode, landmarks, encode) share these cores: threads that
        # spin-wait between runs would take their time (720p default filter on 2 cores: 13.4 -> 17.2 fps).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:
            raise ModelError(f"{path} is not a usable ONNX graph ({str(exc).splitlines()[0]}); delete it and run again.") from None
        self.providers = self.session.get_providers()
        self._names = [i.name for i in self.session.get_inputs()]
        first = self.session.get_inputs()[0].shape
        self.fixed_batch = first[0] if isinstance(first[0], int) else None
        self._sample_dims = first[1:]  # ints where the graph fixes a size, names or None where it is free

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return len(sample) == len(self._sample_dims) and all(
            not isinstance(d, int) or d == n for d, n in zip(self._sample_dims, sample, strict=True))

    def __call__(self, *inputs: Any) -> Any:
        torch_in = not isinstance(inputs[0], np.ndarray)
        arrays = [_to_numpy(x) for x in inputs]
        if self.fixed_batch == 1 and arrays[0].shape[0] != 1:
            # A graph exported with a fixed batch of 1: run the samples one by one.
            outs = [self._run([a[i:i + 1] if self.spec.is_batched(j) else a for j, a in enumerate(arrays)])
                    for i in range(arrays[0].shape[0])]
            out = np.concatenate(outs)
        else:
            out = self._run(arrays)
        if torch_in:
            import torch

            return torch.from_numpy(out).to(inputs[0].device)
        return out

    def _run(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return self.session.run(None, dict(zip(self._names, arrays, strict=True)))[0]


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x, dtype=np.float32)
    return x.detach().float().cpu().numpy()
