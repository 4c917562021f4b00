"""OpenVINO's own runtime on a network's ONNX export: the CPU (Intel GPUs and NPUs where present, untested).

The compiled model is exported (``CompiledModel.export_model``) into henshin's
compiled cache under a key of the network's weights, shapes, precision, device and
OpenVINO version, and imported on the next run instead of being compiled again;
a blob that does not match its record is rebuilt, never used. A graph with free
dimensions is compiled once for each set of input shapes it meets, fixed.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError
from henshin.runtimes import openvino_devices as devices
from henshin.runtimes.batching import run_graph
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")

# Fixed-shape models kept per network: a run meets a few (live: three governed crop sizes; a conversion
# one). Each holds its working memory (multistyle26: 24 MB at 256 px, 267 MB at 720p, 664 MB at 1080p),
# so the oldest also go while the kept ones' inputs hold more than two 1080p frames.
MAX_SHAPES = 4
MAX_ELEMENTS = 2 * 3 * 1080 * 1920
# --precision -> OpenVINO's inference precision hint. fp32 is asked for explicitly: on CPUs with
# AMX or AVX-512 BF16 OpenVINO otherwise runs bf16 by default. int8 is the quantized (QDQ) graph,
# which OpenVINO runs in int8 where its Q/DQ pairs say so; the rest of it stays fp32.
HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "f32"}


def blob_key(
    spec: NetworkSpec, device: str, precision: str, version: str, full_name: str, graph: str = "",
    shapes: str = "",
) -> str:
    """What a compiled OpenVINO model depends on, as a short hash (``graph``: the int8 graph's file name,
    which carries its own key; ``shapes``: the input shapes it was fixed to, ``shape_text``)."""
    parts = {"shapes": shapes} if shapes else {}  # a graph compiled as it is keeps its earlier key
    return cache_key(
        spec,
        runtime="openvino",
        device=device,
        device_name=full_name,
        precision=precision,
        openvino=version,
        graph=graph,
        **parts,
    )


def fixed_shapes(model: Any, shapes: Sequence[Sequence[int]]) -> Any:
    """A copy of an OpenVINO model with its inputs (in order) fixed to ``shapes``."""
    fixed = model.clone()
    fixed.reshape({port.get_any_name(): list(shape) for port, shape in zip(fixed.inputs, shapes, strict=True)})
    return fixed


def shape_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    """Input shapes as one short text: ``1x3x256x256,26``."""
    return ",".join("x".join(str(n) for n in shape) for shape in shapes)


def compile_config(device: str, precision: str, threads: int) -> dict[str, Any]:
    """OpenVINO's compile settings: the precision hint, latency over throughput, the CPU's threads."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    return config


class OpenVinoRuntime:
    """A network's ONNX export compiled by OpenVINO (or imported from the cache), run on its device.

    A graph with free dimensions (the batch; the height and width of a fully convolutional
    network) is compiled once per set of input shapes it is called with, each shape made
    fixed: OpenVINO's CPU plugin runs a fixed-shape model without shape inference and with
    its memory planned once, and the multistyle26 network ran 1.2-1.4x faster so (256 px
    crops and 720p frames; docs/runtimes.md). The last ``MAX_SHAPES`` shapes are kept (fewer
    when they are large: ``MAX_ELEMENTS``); each is cached on disk like the rest, so a new shape costs a compile (about 0.4 s) once per
    machine and an import (under 0.1 s) after.
    """

    name = "openvino"

    def __init__(
        self, spec: NetworkSpec, options: RuntimeOptions, path: Path, precision: str | None = None
    ) -> None:
        """``precision``: what ``path`` holds when it is not what was asked for (``fp32`` when the int8
        graph was not kept)."""
        self.spec = spec
        self.device, self.precision = devices.openvino_device(options.device, options.precision)
        self.precision = precision or self.precision
        core = self._core = devices.core()
        self._version = devices.version()
        self.threads = options.threads or os.cpu_count() or 1
        self._config = compile_config(self.device, self.precision, self.threads)
        self._full_name = str(core.get_property(self.device, "FULL_DEVICE_NAME"))
        self._graph_name = Path(path).name if self.precision == "int8" else ""
        self._path, self._folder = Path(path), cache_dir(options)
        self._model = self._read(core, self._path)
        first = self._model.inputs[0].get_partial_shape()
        self.fixed_batch = first[0].get_length() if first[0].is_static else None
        self._sample_dims = [d.get_length() if d.is_static else None for d in list(first)[1:]]
        self.shaped = any(not i.get_partial_shape().is_static for i in self._model.inputs)
        self._requests: OrderedDict[tuple[tuple[int, ...], ...] | None, Any] = OrderedDict()
        # Compiled now, at the shapes the network was built for: a graph OpenVINO cannot compile
        # is refused before any work, and the usual first call finds its model ready.
        self.blob_path, self.from_cache, self.request = self._prepare(self._nominal())

    def _nominal(self) -> tuple[tuple[int, ...], ...] | None:
        """The input shapes the spec names, batch 1 (None: the graph's own shapes are all fixed)."""
        if not self.shaped:
            return None
        batch = self.fixed_batch or 1
        return tuple(
            (batch, *shape) if self.spec.is_batched(i) else tuple(shape)
            for i, (_, shape) in enumerate(self.spec.inputs)
        )

    def _prepare(self, shapes: tuple[tuple[int, ...], ...] | None) -> tuple[Path, bool, Any]:
        """The compiled model for ``shapes``, from the cache or compiled (and cached): its blob, whether
        it came from the cache, and an infer request on it."""
        core = self._core
        key = blob_key(self.spec, self.device, self.precision, self._version, self._full_name,
                       self._graph_name, "" if shapes is None else shape_text(shapes))
        blob = self._folder / f"{self.spec.key}-{key}.openvino"
        meta = {
            "network": self.spec.key,
            "device": self._full_name,
            "precision": self.precision,
            "openvino": self._version,
            **({"shapes": shape_text(shapes)} if shapes is not None else {}),
        }
        compiled, from_cache = self._load(core, blob, meta, self._config), True
        if compiled is None:
            from_cache = False
            model = self._model if shapes is None else fixed_shapes(self._model, shapes)
            compiled = self._compile(core, model, self._config, shapes)
            buffer = io.BytesIO()
            compiled.export_model(buffer)
            write_cached(blob, buffer.getvalue(), meta)
        request = compiled.create_infer_request()
        self._requests[shapes] = request
        while len(self._requests) > MAX_SHAPES or (
            len(self._requests) > 1 and sum(math.prod(k[0]) for k in self._requests if k) > MAX_ELEMENTS
        ):
            self._requests.popitem(last=False)
        return blob, from_cache, request

    def request_for(self, arrays: list[np.ndarray]) -> Any:
        """The infer request for inputs of these shapes, compiled or imported on the first call with them."""
        if not self.shaped:
            return self.request
        shapes = tuple(tuple(a.shape) for a in arrays)
        request = self._requests.get(shapes)
        if request is None:
            return self._prepare(shapes)[2]
        self._requests.move_to_end(shapes)
        return request

    def _load(self, core: Any, blob: Path, meta: dict[str, Any], config: dict[str, Any]) -> Any:
        data = read_cached(blob, meta)
        if data is None:
            return None
        try:
            return core.import_model(io.BytesIO(data), self.device, config)
        except Exception:  # noqa: BLE001 - a blob from another build: compiled again
            log.warning("cached OpenVINO model %s does not load; compiling it again.", blob.name)
            return None

    def _compile(self, core: Any, model: Any, config: dict[str, Any],
                 shapes: tuple[tuple[int, ...], ...] | None) -> Any:
        log.info(
            "compiling %s with OpenVINO for %s %s%s (once; cached in %s)",
            self.spec.key,
            self.device,
            self.precision,
            "" if shapes is None else f" at {shape_text(shapes)}",
            self._folder,
        )
        try:
            return core.compile_model(model, self.device, config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(
                f"OpenVINO cannot compile {self._path} ({str(exc).splitlines()[0]}); "
                "use --runtime onnxruntime."
            ) from None

    @staticmethod
    def _read(core: Any, path: Path) -> Any:
        try:
            return core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - as above
            raise ModelError(
                f"OpenVINO cannot read {path} ({str(exc).splitlines()[0]}); use --runtime onnxruntime."
            ) from None

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return len(sample) == len(self._sample_dims) and all(
            d is None or d == n for d, n in zip(self._sample_dims, sample, strict=True)
        )

    def __call__(self, *inputs: Any) -> Any:
        # A free batch runs sample by sample on the batch-1 model: a face's result then never depends on
        # how many faces share its call (offline batches them, live does not; both give the same bytes),
        # and at batch 4 it cost what four calls cost (multistyle26, 256 px: 87 against 4 x 22 ms).
        return run_graph(self._run, self.spec, 1 if self.shaped else self.fixed_batch, inputs)

    def _run(self, arrays: list[np.ndarray]) -> np.ndarray:
        # A copy: the request's output buffer is reused by the next call.
        return np.array(self.request_for(arrays).infer(arrays)[0], dtype=np.float32, copy=True)
