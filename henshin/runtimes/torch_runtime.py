"""The torch runtime: eager, channels-last, fp16/bf16 on CUDA, torch.compile and CUDA graphs."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from henshin.errors import OptionError, RuntimeUnavailableError
from henshin.runtimes.options import NetworkSpec, RuntimeOptions, module_of


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
        module = copy.deepcopy(module_of(spec)).eval().to(self.device, self.dtype)
        if self.device.type == "cuda":
            module = channels_last(module)
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


def channels_last(module: Any) -> Any:
    """``module`` with its 4-D weights in channels-last layout, in place.

    ``Module.to(memory_format=channels_last)`` refuses modules that hold 5-D tensors
    (StyleGAN2's modulated convolutions keep their weight as (1, out, in, k, k));
    those, and every other tensor, keep their layout.
    """
    import torch

    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module
