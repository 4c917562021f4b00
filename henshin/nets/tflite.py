"""TFLite graphs as torch modules: the reader of mediapipe's face networks.

mediapipe ships its face detectors (BlazeFace, short and full range) and face mesh as TFLite
flatbuffers inside its wheel. ``read_tflite`` parses one (with the flatbuffer schema module the
wheel ships) into a ``GraphSpec`` — the operators in execution order and their options — plus
the constant tensors, with the sparse weights behind ``DENSIFY`` operators made dense
(``henshin.nets.tflite_sparse``), the fp16 weights behind ``DEQUANTIZE`` operators turned into
fp32 and the layouts transposed for torch (TFLite convolutions are OHWI, depthwise 1HWC).
``TFLiteNet`` runs such a spec with torch operators, NCHW inside, so one module serves every
network on CPU or CUDA, batched, and exports to ONNX.

Strict: an operator that is not understood, a constant that no operator uses, sparse weights
that do not fit their tensor, or a weight whose shape does not fit its operator is a
``ModelError`` naming it; the graph is run once at conversion and every operator's output must
have the shape the file declares.

Conventions that differ from torch (and that the public torch ports get wrong): TFLite's
``SAME`` padding puts the odd pixel after (bottom/right), so a 3×3 stride-2 convolution of
an even input pads (0, 1), not (1, 1); ``RESHAPE`` and ``CONCATENATION`` work on NHWC;
``DEPTH_TO_SPACE`` orders channels block-row, block-column, then depth (torch's
``pixel_shuffle`` puts depth first).
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from henshin.errors import ModelError
from henshin.nets.tflite_sparse import Level, SparsityError, densify

SUPPORTED = (
    "CONV_2D",
    "RESIZE_BILINEAR",
    "DEPTH_TO_SPACE",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "RELU",
    "PRELU",
    "PAD",
    "MAX_POOL_2D",
    "RESHAPE",
    "CONCATENATION",
)
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}


@dataclass
class Node:
    """One operator: its kind, the tensor ids it reads and writes, and its options."""

    op: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class GraphSpec:
    """A TFLite subgraph in execution order; shapes are TFLite's (NHWC)."""

    inputs: list[int]
    outputs: list[int]
    output_names: list[str]
    nodes: list[Node]
    shapes: dict[int, list[int]]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> GraphSpec:
        doc = json.loads(text)
        return cls(
            doc["inputs"],
            doc["outputs"],
            doc["output_names"],
            [Node(**n) for n in doc["nodes"]],
            {int(k): v for k, v in doc["shapes"].items()},
        )


def _schema() -> Any:
    try:
        from mediapipe.tasks.metadata import schema_py_generated
    except ImportError:
        raise ModelError(
            "reading a .tflite file needs the mediapipe package (it ships the TFLite schema); "
            "install it with: pip install 'henshin[mediapipe]'."
        ) from None
    return schema_py_generated


def read_tflite(path: Path) -> tuple[GraphSpec, dict[str, Tensor]]:
    """Parse a TFLite file into a graph spec and its constants (fp32, torch layouts), strictly."""
    S = _schema()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path} ({exc.strerror}).") from None
    if data[4:8] != b"TFL3":  # the flatbuffer's file identifier
        raise ModelError(
            f"{path} is not a TFLite model (no TFL3 identifier); give mediapipe's .tflite file."
        )
    try:
        model = S.ModelT.InitFromPackedBuf(data, 0)
    except (ValueError, IndexError, TypeError, struct.error) as exc:
        raise ModelError(
            f"{path} is a damaged TFLite model ({exc}); reinstall mediapipe."
        ) from None
    if len(model.subgraphs) != 1:
        raise ModelError(f"{path}: expected one subgraph, got {len(model.subgraphs)}.")
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(S.BuiltinOperator).items() if not k.startswith("_")}

    dense: dict[int, np.ndarray] = {}  # DENSIFY outputs, each to be read by one operator
    taken: set[int] = set()

    def raw(index: int) -> np.ndarray | None:
        if index in dense:
            taken.add(index)
            return dense[index]
        t = graph.tensors[index]
        if t.sparsity is not None:
            raise ModelError(f"{path}: sparse tensor {t.name.decode()} is read without DENSIFY.")
        return _buffer(S, model, t, path)

    constants: dict[int, np.ndarray] = {}
    nodes: list[Node] = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ins, outs = [int(i) for i in op.inputs], [int(o) for o in op.outputs]
        if kind == "DENSIFY":  # a sparse constant stored once, made dense here
            dense[outs[0]] = _densified(S, model, graph, ins[0], outs[0], path)
            continue
        if kind == "DEQUANTIZE":  # fp16 weights stored once, read as fp32: fold into a constant
            value = raw(ins[0])
            if value is None:
                raise ModelError(f"{path}: a DEQUANTIZE reads a tensor that is not a constant.")
            # fp16 weights hold subnormal values that make x86 float arithmetic crawl; they are zero in effect
            value = value.astype(np.float32)
            value[np.abs(value) < np.finfo(np.float32).tiny] = 0.0
            constants[outs[0]] = value
            continue
        if kind not in SUPPORTED:
            raise ModelError(
                f"{path}: operator {kind} is not supported by henshin's TFLite reader."
            )
        for i in ins:
            if i >= 0 and i not in constants and (value := raw(i)) is not None:
                constants[i] = value
        nodes.append(Node(kind, ins, outs, _options(kind, op.builtinOptions)))
    if set(dense) - taken:
        raise ModelError(f"{path}: densified tensors {sorted(set(dense) - taken)} are never read.")
    shapes = {i: [int(d) for d in t.shape] for i, t in enumerate(graph.tensors)}
    spec = GraphSpec(
        [int(i) for i in graph.inputs],
        [int(o) for o in graph.outputs],
        [graph.tensors[o].name.decode() for o in graph.outputs],
        nodes,
        shapes,
    )
    weights = _torch_constants(spec, constants, path)
    _check_shapes(spec, weights, path)
    return spec, weights


def _buffer(S: Any, model: Any, t: Any, path: Path) -> np.ndarray | None:
    """A tensor's constant data in its own shape, or None when it has none (an activation)."""
    data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
    if data is None or len(data) == 0:
        return None
    dtype = _dtype(S, t, path)
    values = np.frombuffer(bytes(data), dtype=dtype)
    if t.sparsity is not None:
        return values  # the non-zero values only: DENSIFY places them
    if values.size != int(np.prod(t.shape)):
        raise ModelError(
            f"{path}: tensor {t.name.decode()} holds {values.size} values for shape {list(t.shape)}."
        )
    return values.reshape(list(t.shape))


def _dtype(S: Any, t: Any, path: Path) -> Any:
    dtype = {
        S.TensorType.FLOAT32: np.float32,
        S.TensorType.FLOAT16: np.float16,
        S.TensorType.INT32: np.int32,
    }.get(t.type)
    if dtype is None:
        raise ModelError(
            f"{path}: tensor {t.name.decode()} has a type henshin does not read ({t.type})."
        )
    return dtype


def _densified(S: Any, model: Any, graph: Any, source: int, target: int, path: Path) -> np.ndarray:
    """A DENSIFY's sparse constant as the dense array its output declares (same type and shape)."""
    t, out = graph.tensors[source], graph.tensors[target]
    name = t.name.decode()
    if t.sparsity is None or out.sparsity is not None:
        raise ModelError(f"{path}: DENSIFY of {name} does not turn a sparse tensor dense.")
    if t.type != out.type or list(t.shape) != list(out.shape):
        raise ModelError(f"{path}: DENSIFY of {name} changes its type or shape.")
    values = _buffer(S, model, t, path)
    if values is None:
        raise ModelError(f"{path}: DENSIFY reads {name}, which is not a constant.")
    s = t.sparsity
    levels = [
        Level(
            int(d.format),
            int(d.denseSize),
            None if d.arraySegments is None else np.asarray(d.arraySegments.values, np.int64),
            None if d.arrayIndices is None else np.asarray(d.arrayIndices.values, np.int64),
        )
        for d in (s.dimMetadata or [])
    ]
    try:
        return densify(
            values,
            [int(d) for d in t.shape],
            [int(d) for d in (s.traversalOrder if s.traversalOrder is not None else [])],
            [int(d) for d in (s.blockMap if s.blockMap is not None else [])],
            levels,
        )
    except SparsityError as exc:
        raise ModelError(f"{path}: sparse tensor {name}: {exc}.") from None


def _options(kind: str, options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    out: dict[str, Any] = {}
    for key in (
        "padding",
        "strideH",
        "strideW",
        "filterHeight",
        "filterWidth",
        "depthMultiplier",
        "axis",
        "dilationHFactor",
        "dilationWFactor",
        "alignCorners",
        "halfPixelCenters",
        "blockSize",
    ):
        if hasattr(options, key):
            out[key] = int(getattr(options, key))
    if hasattr(options, "fusedActivationFunction"):
        act = int(options.fusedActivationFunction)
        if act not in _ACTIVATIONS:
            raise ModelError(
                f"operator {kind} has a fused activation henshin does not run ({act})."
            )
        out["activation"] = _ACTIVATIONS[act]
    if getattr(options, "newShape", None) is not None:
        out["newShape"] = [int(d) for d in options.newShape]
    return out


def _torch_constants(
    spec: GraphSpec, constants: dict[int, np.ndarray], path: Path
) -> dict[str, Tensor]:
    """Constants in torch layouts, each checked against the operator that reads it."""
    out: dict[str, Tensor] = {}
    used: set[int] = set()
    for node in spec.nodes:
        ins = node.inputs
        if node.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w, b = (
                constants.get(ins[1]),
                constants.get(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None,
            )
            if w is None or w.ndim != 4:
                raise ModelError(f"{path}: {node.op} weight {ins[1]} is missing or not 4-D.")
            if node.op == "CONV_2D":
                weight = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            else:
                weight = w[0].transpose(2, 0, 1)[:, None]  # 1HWC -> C1HW (groups = input channels)
            if b is not None and b.shape != (weight.shape[0],):
                raise ModelError(
                    f"{path}: {node.op} bias {ins[2]} has shape {b.shape}, expected ({weight.shape[0]},)."
                )
            out[f"t{ins[1]}"] = torch.from_numpy(np.ascontiguousarray(weight))
            used.add(ins[1])
            if b is not None:
                out[f"t{ins[2]}"] = torch.from_numpy(b.copy())
                used.add(ins[2])
        elif node.op == "PRELU":
            alpha = constants[ins[1]].reshape(-1)
            out[f"t{ins[1]}"] = torch.from_numpy(alpha.copy()).view(1, -1, 1, 1)
            used.add(ins[1])
        elif node.op == "PAD":
            node.options["paddings"] = constants[ins[1]].astype(int).tolist()
            used.add(ins[1])
        elif node.op == "RESIZE_BILINEAR":
            node.options["size"] = constants[ins[1]].astype(int).tolist()
            used.add(ins[1])
            if (node.options["alignCorners"], node.options["halfPixelCenters"]) == (0, 0):
                # TF1's resize (corners at 0 and size, no half-pixel offset) has no torch twin
                raise ModelError(
                    f"{path}: RESIZE_BILINEAR without half-pixel centres is not supported."
                )
        elif node.op == "RESHAPE" and len(ins) > 1 and ins[1] in constants:
            node.options["newShape"] = constants[ins[1]].astype(int).tolist()
            used.add(ins[1])
    unused = sorted(set(constants) - used)
    if unused:
        raise ModelError(
            f"{path}: constants {unused[:5]} are not used by any operator henshin runs."
        )
    return out


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding: out = ceil(size / stride), the odd pixel padded after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class TFLiteNet(nn.Module):
    """Runs a ``GraphSpec`` with torch operators; 4-D tensors are NCHW inside, outputs NHWC as TFLite's.

    Input: (N, H, W, C) or (N, C, H, W) float (``channels_last_input`` says which); the batch may be
    any size (TFLite's batch of 1 is not fixed here).
    """

    def __init__(self, spec: GraphSpec, constants: dict[str, Tensor]) -> None:
        super().__init__()
        self.spec = spec
        self.consts = nn.ParameterDict(
            {k: nn.Parameter(v, requires_grad=False) for k, v in constants.items()}
        )

    def forward(self, x: Tensor, channels_last_input: bool = False) -> list[Tensor]:
        if channels_last_input:
            x = x.permute(0, 3, 1, 2)
        values: dict[int, Tensor] = {self.spec.inputs[0]: x}
        for node in self.spec.nodes:
            values[node.outputs[0]] = self._run(node, values)
        return [self._as_tflite(values[o]) for o in self.spec.outputs]

    def _const(self, index: int) -> Tensor:
        return self.consts[f"t{index}"]

    def _run(self, node: Node, values: dict[int, Tensor]) -> Tensor:
        o, ins = node.options, node.inputs
        op = node.op
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x, w = values[ins[0]], self._const(ins[1])
            bias = self._const(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
            stride, dil = (
                (o["strideH"], o["strideW"]),
                (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)),
            )
            x = self._pad_same(x, w.shape[-2:], stride, dil) if o["padding"] == 0 else x
            groups = x.shape[1] if op == "DEPTHWISE_CONV_2D" else 1
            return _activate(F.conv2d(x, w, bias, stride, 0, dil, groups), o.get("activation"))
        if op == "ADD":
            return _activate(
                self._value(ins[0], values) + self._value(ins[1], values), o.get("activation")
            )
        if op == "RELU":
            return F.relu(values[ins[0]])
        if op == "PRELU":
            x = values[ins[0]]
            return torch.where(x >= 0, x, x * self._const(ins[1]))
        if op == "PAD":
            return _pad_nhwc(values[ins[0]], o["paddings"])
        if op == "MAX_POOL_2D":
            x = values[ins[0]]
            kernel, stride = (o["filterHeight"], o["filterWidth"]), (o["strideH"], o["strideW"])
            if o["padding"] == 0:
                x = self._pad_same(x, kernel, stride, (1, 1), value=float("-inf"))
            return _activate(F.max_pool2d(x, kernel, stride), o.get("activation"))
        if op == "RESIZE_BILINEAR":
            # half-pixel centres (the source clamped at the edges) is torch's align_corners=False
            return F.interpolate(
                values[ins[0]], o["size"], mode="bilinear", align_corners=bool(o["alignCorners"])
            )
        if op == "DEPTH_TO_SPACE":
            return _depth_to_space(values[ins[0]], o["blockSize"])
        if op == "RESHAPE":
            x = self._as_tflite(values[ins[0]])
            shape = list(o["newShape"])
            return x.reshape([x.shape[0], *shape[1:]])
        if op == "CONCATENATION":
            parts = [self._as_tflite(values[i]) for i in ins]
            axis = o["axis"] if o["axis"] >= 0 else o["axis"] + parts[0].dim()
            return _activate(torch.cat(parts, dim=axis), o.get("activation"))
        raise ModelError(f"operator {op} is not supported by henshin's TFLite reader.")

    def _value(self, index: int, values: dict[int, Tensor]) -> Tensor:
        return values[index] if index in values else self._const(index)

    @staticmethod
    def _pad_same(x: Tensor, kernel: Any, stride: Any, dilation: Any, value: float = 0.0) -> Tensor:
        top, bottom = _same_padding(x.shape[2], int(kernel[0]), stride[0], dilation[0])
        left, right = _same_padding(x.shape[3], int(kernel[1]), stride[1], dilation[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=value)

    @staticmethod
    def _as_tflite(x: Tensor) -> Tensor:
        """NCHW (inside) to TFLite's NHWC; other ranks are already in TFLite's layout."""
        return x.permute(0, 2, 3, 1) if x.dim() == 4 else x


def _depth_to_space(x: Tensor, block: int) -> Tensor:
    """TFLite DEPTH_TO_SPACE on NCHW: input channel (i·block + j)·C + c goes to pixel (i, j) of
    its block, channel c (TensorFlow's depth-column-row order; torch's pixel_shuffle is c-first)."""
    n, depth, h, w = x.shape
    c = depth // (block * block)
    x = x.reshape(n, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(n, c, h * block, w * block)


def _check_shapes(spec: GraphSpec, weights: dict[str, Tensor], path: Path) -> None:
    """Run the graph once at its declared input shape: every operator's output must have the
    shape the file declares (so every weight fits the tensor it is applied to)."""
    net = TFLiteNet(spec, weights)
    shape = spec.shapes[spec.inputs[0]]
    values: dict[int, Tensor] = {spec.inputs[0]: torch.zeros(shape).permute(0, 3, 1, 2)}
    with torch.no_grad():
        for node in spec.nodes:
            try:
                out = net._run(node, values)
            except (RuntimeError, ValueError) as exc:
                raise ModelError(f"{path}: {node.op} -> tensor {node.outputs[0]}: {exc}") from None
            got, want = list(TFLiteNet._as_tflite(out).shape), spec.shapes[node.outputs[0]]
            if got != want:
                raise ModelError(
                    f"{path}: {node.op} gives tensor {node.outputs[0]} shape {got}, the file says {want}."
                )
            values[node.outputs[0]] = out


def _activate(x: Tensor, activation: str | None) -> Tensor:
    if activation == "relu":
        return F.relu(x)
    if activation == "relu6":
        return F.relu6(x)
    return x


def _pad_nhwc(x: Tensor, paddings: list[list[int]]) -> Tensor:
    """TFLite PAD (NHWC paddings) on an NCHW tensor: zeros before/after each axis."""
    (n0, n1), (h0, h1), (w0, w1), (c0, c1) = paddings
    if n0 or n1:
        raise ModelError("PAD along the batch is not supported by henshin's TFLite reader.")
    return F.pad(x, (w0, w1, h0, h1, c0, c1))
