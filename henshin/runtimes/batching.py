"""What the ONNX-graph runtimes (ONNX Runtime, OpenVINO) share around a run: arrays in, the batch
split for a graph fixed at batch 1, and the output handed back as the caller's kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from henshin.runtimes.options import NetworkSpec


def run_graph(
    run: Callable[[list[np.ndarray]], np.ndarray],
    spec: NetworkSpec,
    fixed_batch: int | None,
    inputs: Sequence[Any],
) -> Any:
    """``run`` on ``inputs`` (arrays or tensors, batch axis first): sample by sample where the graph
    was exported with a fixed batch of 1; a tensor back on the first input's device if it was one."""
    torch_in = not isinstance(inputs[0], np.ndarray)
    arrays = [to_numpy(x) for x in inputs]
    if fixed_batch == 1 and arrays[0].shape[0] != 1:
        outs = [
            run([a[i : i + 1] if spec.is_batched(j) else a for j, a in enumerate(arrays)])
            for i in range(arrays[0].shape[0])
        ]
        out = np.concatenate(outs)
    else:
        out = run(arrays)
    if torch_in:
        import torch

        return torch.from_numpy(out).to(inputs[0].device)
    return out


def to_numpy(x: Any) -> np.ndarray:
    """A contiguous float32 array of an array or a tensor (any device)."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x, dtype=np.float32)
    return x.detach().float().cpu().numpy()
