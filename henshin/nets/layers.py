"""StyleGAN2's layers, written once for every network built on them (StyleGAN2, e4e, GANs N' Roses).

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2), as
rosinality/stylegan2-pytorch's ``model.py`` builds them: parameter and buffer names match its
state dicts, so its checkpoints and those of the projects built on it load strictly with no
remap. The official fused CUDA kernels (``fused_act``, ``upfirdn2d``) are replaced by plain
torch ops that export to ONNX and run on any device.

Convention: activations (N, C, H, W); styles (N, style_dim); blur kernels are the 4×4 outer
product of the taps, normalised to sum 1 (×factor² where they upsample).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

BLUR_TAPS = (1, 3, 3, 1)  # StyleGAN2's FIR filter (Zhang 2019 anti-aliasing; rosinality's blur_kernel)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' variance through leaky ReLU (StyleGAN's "gain")
DEMOD_EPS = 1e-8  # StyleGAN2 eq. 3
HALF = (torch.float16, torch.bfloat16)


# -- resampling (upfirdn2d in plain torch) -----------------------------------------------------


def blur_kernel(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> Tensor:
    """The 2-D FIR kernel: outer product of ``taps``, normalised to sum 1, times ``gain``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              channels: int | None = None) -> Tensor:
    """Upsample by zero insertion, pad, convolve each channel with ``kernel``, keep every ``down``-th pixel.

    Same result as NVIDIA's upfirdn2d (a true convolution: the kernel is flipped), written with
    reshape, pad and a depthwise convolution. ``channels``: x's channel count as a plain int,
    which modules pass so that an exported graph's kernel has a static shape. (Folding the
    channels into the batch for a 1-channel convolution instead is 2-4× slower in fp16 on an
    H100: cuDNN has no fast kernel for it.)
    """
    c = channels if channels is not None else x.shape[1]
    h, w = x.shape[2:]
    if up > 1:
        x = F.pad(x.reshape(-1, c, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1)).reshape(-1, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    weight = kernel.flip(0, 1).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, weight, stride=down, groups=c)


class Blur(nn.Module):
    """FIR low-pass of ``channels`` maps with fixed padding (buffer ``kernel``); ``upsample_factor`` keeps the gain."""

    def __init__(self, channels: int, pad: tuple[int, int], upsample_factor: int = 1,
                 taps: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        self.register_buffer("kernel", blur_kernel(taps, upsample_factor ** 2))
        self.channels, self.pad = channels, pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad, channels=self.channels)


class Upsample(nn.Module):
    """×2 upsampling of ``channels`` maps through the FIR filter (ToRGB's skip path; buffer ``kernel``)."""

    def __init__(self, channels: int = 3, factor: int = 2, taps: Sequence[float] = BLUR_TAPS) -> None:
        super().__init__()
        self.channels, self.factor = channels, factor
        self.register_buffer("kernel", blur_kernel(taps, factor ** 2))
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad, channels=self.channels)


# -- equalized learning rate (Karras et al. 2018, sec. 4.1) -------------------------------------


def fused_leaky_relu(x: Tensor, bias: Tensor | None) -> Tensor:
    """``√2 · leaky_relu(x + b, 0.2)``: bias, activation and gain in one expression (``fused_act``)."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


class FusedLeakyReLU(nn.Module):
    """Per-channel bias then the scaled leaky ReLU (parameter ``bias``; none when ``bias`` is False)."""

    def __init__(self, channels: int, bias: bool = True) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class PixelNorm(nn.Module):
    """Each vector scaled to unit RMS (StyleGAN's mapping input; computed in fp32 even in half precision)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(dim=1, keepdim=True) + 1e-8).to(x.dtype)


class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling ``W·lr_mul/√in`` and bias ``b·lr_mul``."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Convolution with run-time weight scaling ``W/√(in·k²)``."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[Blur,] EqualConv2d, [FusedLeakyReLU]: rosinality's ``ConvLayer`` (keys ``N.kernel``, ``N.weight``, ``N.bias``)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (kernel_size - 1)
            layers.append(Blur(in_channel, ((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel_size // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


# -- style-modulated convolution (StyleGAN2 sec. 2.2) -------------------------------------------


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled by a style (eq. 1) and outputs demodulated (eqs. 2-3).

    Two forms with the same result. ``grouped`` (rosinality's): one weight per sample, a
    convolution with ``groups=batch``; its group count is fixed when exported. The batched
    form (default) scales the activations instead of the weights, ``conv(x·s, W)·d``, so one
    weight serves the whole batch and the graph exports with a free batch axis.
    """

    grouped = False

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        if upsample:  # transposed conv (stride 2) then the blur that removes its checkerboard
            p = (len(BLUR_TAPS) - 2) - (kernel_size - 1)
            self.blur = Blur(out_channel, ((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        style = self.modulation(w)
        weight = self.weight[0] * self.scale
        if self.grouped:
            return self._grouped(x, style, weight)
        if self.demodulate and x.dtype in HALF:
            style, weight = _prenormalise(style, weight)
        x = x * style.to(x.dtype)[:, :, None, None]
        out = self._conv(x, weight.to(x.dtype), groups=1)
        if self.demodulate:
            out = out * demodulation(style, weight).to(out.dtype)[:, :, None, None]
        return self.blur(out) if self.upsample else out

    def _grouped(self, x: Tensor, style: Tensor, weight: Tensor) -> Tensor:
        n, _, h, w = x.shape
        weight = weight[None] * style[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + DEMOD_EPS)[:, :, None, None, None]
        out = self._conv(x.reshape(1, -1, h, w), weight.reshape(-1, *weight.shape[2:]), groups=n)
        out = out.reshape(n, self.out_channel, *out.shape[2:])
        return self.blur(out) if self.upsample else out

    def _conv(self, x: Tensor, weight: Tensor, groups: int) -> Tensor:
        if not self.upsample:
            return F.conv2d(x, weight, padding=self.padding, groups=groups)
        # conv_transpose2d wants (in, out/groups, k, k): per group, the weight's two channel axes swap.
        k = self.kernel_size
        weight = weight.reshape(groups, -1, self.in_channel, k, k).transpose(1, 2).reshape(-1, self.out_channel, k, k)
        return F.conv_transpose2d(x, weight, stride=2, groups=groups)


def demodulation(style: Tensor, weight: Tensor) -> Tensor:
    """``rsqrt(Σ_{i,k} (s_i·W_oik)² + 1e-8)`` per sample and output channel (eq. 3), in fp32."""
    energy = style.float().pow(2) @ weight.float().pow(2).sum([2, 3]).t()
    return torch.rsqrt(energy + DEMOD_EPS)


def _prenormalise(style: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Scale styles and weights to at most 1 before a half-precision modulated conv.

    Demodulation cancels both scales, and the activations ``x·s`` then cannot overflow fp16
    (as NVIDIA's stylegan2-ada-pytorch ``modulated_conv2d`` does for its fp16 layers).
    """
    style = style / style.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-8).to(style.dtype)
    weight = weight / weight.float().abs().amax(dim=[1, 2, 3], keepdim=True).clamp_min(1e-8).to(weight.dtype)
    return style, weight


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned strength (parameter ``weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.weight * noise.to(x.dtype)


class StyledConv(nn.Module):
    """Modulated conv, [noise,] bias and scaled leaky ReLU: one synthesis layer."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, demodulate: bool = True, noise: bool = True) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, demodulate, upsample)
        self.noise = NoiseInjection() if noise else None
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None = None) -> Tensor:
        x = self.conv(x, w)
        if self.noise is not None and noise is not None:
            x = self.noise(x, noise)
        return self.activate(x)


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation) plus bias, added to the upsampled skip image."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = Upsample(3) if upsample else None
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None and self.upsample is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4×4 constant the synthesis network starts from (parameter ``input``)."""

    def __init__(self, channel: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, like: Tensor) -> Tensor:
        return self.input.expand(like.shape[0], -1, -1, -1)


def set_grouped(module: nn.Module, grouped: bool) -> nn.Module:
    """Switch every modulated conv in ``module`` to the grouped (per-sample weight) or batched form."""
    for m in module.modules():
        if isinstance(m, ModulatedConv2d):
            m.grouped = grouped
    return module
