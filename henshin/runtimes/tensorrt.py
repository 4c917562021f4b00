"""The TensorRT runtime: ONNX → plan (FP16, a batch profile, a timing cache), cached on disk.

Written for the TensorRT 10 Python API (named I/O tensors, ``execute_async_v3``).
Inputs and outputs are torch CUDA tensors bound by address, and the plan runs on
the current torch CUDA stream, so it orders with the rest of the frame's GPU work
without a synchronisation. Plans are cached under a key made of the network's
weights hash, the input shapes, the batch range, the precision, the GPU name and
the TensorRT version; a cached plan whose bytes do not match its record, or
that TensorRT refuses to load, is rebuilt and never used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError, OptionError, RuntimeUnavailableError
from henshin.runtimes.cache import cache_dir, cache_key, read_cached, write_cached
from henshin.runtimes.options import NetworkSpec, RuntimeOptions

log = logging.getLogger("henshin")

WORKSPACE_BYTES = 4 << 30


def _modules() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeUnavailableError("TensorRT is not installed; install it with: pip install 'henshin[tensorrt]'.") from None
    import torch

    if not torch.cuda.is_available():
        raise RuntimeUnavailableError("TensorRT needs a CUDA GPU and torch with CUDA, and none was found; use --runtime onnxruntime.")
    return trt, torch


def plan_key(spec: NetworkSpec, options: RuntimeOptions, gpu: str, trt_version: str) -> str:
    """What a TensorRT plan depends on, as a short hash."""
    precision = options.precision or "fp16"
    # A plan fixes every size but the batch, even for a network whose ONNX graph leaves them free.
    return cache_key(spec, runtime="tensorrt", precision=precision, max_batch=options.max_batch,
                     gpu=gpu, tensorrt=trt_version, shapes=spec.inputs)


class TensorRTRuntime:
    """A TensorRT plan built from the network's ONNX graph (or loaded from the cache), deserialized and run."""

    name = "tensorrt"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions, onnx_path: Path) -> None:
        trt, torch = _modules()
        self.spec, self.options = spec, options
        self.precision = options.precision or "fp16"
        if self.precision not in ("fp32", "fp16"):
            raise OptionError(f"TensorRT runs fp32 or fp16, not {self.precision}.")
        self.device = torch.device(options.device or "cuda")
        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        gpu = torch.cuda.get_device_name(self.device)
        self.plan_path = cache_dir(options) / f"{spec.key}-{plan_key(spec, options, gpu, trt.__version__)}.plan"
        meta = {"network": spec.key, "gpu": gpu, "tensorrt": trt.__version__, "precision": self.precision,
                "max_batch": options.max_batch, "inputs": spec.inputs}
        plan = read_cached(self.plan_path, meta)
        engine = self._deserialize(plan) if plan is not None else None
        if plan is not None and engine is None:
            log.warning("cached TensorRT plan %s does not load; building it again.", self.plan_path)
        if engine is None:
            plan = self._build(onnx_path, gpu)
            engine = self._deserialize(plan)
            if engine is None:
                raise ModelError(f"TensorRT built a plan for {spec.key} that it cannot load; delete {self.plan_path.parent} and retry.")
            write_cached(self.plan_path, plan, meta)
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        expected = [name for name, _ in spec.inputs]
        if sorted(self._inputs) != sorted(expected):
            raise ModelError(f"TensorRT plan {self.plan_path} has inputs {self._inputs}, expected {expected}; delete it and retry.")
        self._inputs = expected
        first = next(name for i, (name, _) in enumerate(spec.inputs) if spec.is_batched(i))
        self.max_batch = int(engine.get_tensor_profile_shape(first, 0)[2][0])
        self._sample = dict(spec.inputs)[first]

    def accepts(self, sample: tuple[int, ...]) -> bool:
        return tuple(sample) == tuple(self._sample)  # the profile fixes every size but the batch

    def _deserialize(self, plan: bytes) -> Any:
        try:
            return self._trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        except Exception:  # TensorRT raises or returns None for a plan it cannot read
            return None

    def _build(self, onnx_path: Path, gpu: str) -> bytes:
        trt = self._trt
        log.info("building a TensorRT %s plan for %s on %s (once; cached in %s)", self.precision, self.spec.key,
                 gpu, self.plan_path.parent)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(Path(onnx_path).read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}.")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        timing_path = cache_dir(self.options) / f"tensorrt-{trt.__version__}-{gpu.replace(' ', '_')}.timing"
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
        config.set_timing_cache(timing, ignore_mismatch=True)
        profile = builder.create_optimization_profile()
        top = self.options.max_batch
        declared = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
        for i, (name, shape) in enumerate(self.spec.inputs):
            if self.spec.is_batched(i):
                fixed = declared.get(name, (-1,))[0]
                low, opt, high = (fixed, fixed, fixed) if fixed > 0 else (1, min(top, 4), top)
                profile.set_shape(name, (low, *shape), (opt, *shape), (high, *shape))
            else:
                profile.set_shape(name, shape, shape, shape)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelError(f"TensorRT could not build a plan for {self.spec.key}; run with HENSHIN_NATIVE_LOGS=1 to see why.")
        tmp = timing_path.with_name(timing_path.name + ".partial")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        tmp.replace(timing_path)
        return bytes(serialized)

    def __call__(self, *inputs: Any) -> Any:
        torch = self._torch
        as_numpy = isinstance(inputs[0], np.ndarray)
        tensors = []
        for x in inputs:
            t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
            tensors.append(t.to(self.device, torch.float32).contiguous())
        batch = tensors[0].shape[0]
        if batch > self.max_batch:
            # Past the profile's range (or a graph with a fixed batch): run in chunks.
            step = self.max_batch
            parts = [self(*[t[i:i + step] if self.spec.is_batched(j) else t for j, t in enumerate(tensors)])
                     for i in range(0, batch, step)]
            out = torch.cat(parts)
            return out.cpu().numpy() if as_numpy else out
        for name, t in zip(self._inputs, tensors, strict=True):
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outputs = []
        for name in self._outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = torch.float16 if self.engine.get_tensor_dtype(name) == self._trt.DataType.HALF else torch.float32
            out = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"TensorRT failed to run {self.spec.key}.")
        out = outputs[0].float()
        return out.cpu().numpy() if as_numpy else out
