"""The ONNX Runtime runtime: the CPU with a thread per core, or the CUDA provider where installed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from henshin.errors import ModelError, RuntimeUnavailableError
from henshin.runtimes.options import (
    NetworkSpec,
    RuntimeOptions,
    cuda_available,
    onnxruntime_providers,
)


class OnnxRuntime:
    """ONNX Runtime: CPU with a thread per core, or the CUDA provider where installed."""

    name = "onnxruntime"

    def __init__(self, spec: NetworkSpec, options: RuntimeOptions, path: Path) -> None:
        import onnxruntime as ort

        self.spec, self.path = spec, path
        self.precision = "fp32"  # "int8" when the graph is the quantized one (see ``quantize``)
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

