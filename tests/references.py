"""Reference forwards from a state dict: fast-neural-style, e4e's encoder, GANs N' Roses' generator.

Each is written in plain torch functional ops from the official code's behaviour
(pytorch/examples ``fast_neural_style/neural_style/transformer_net.py``, encoder4editing
``models/encoders/psp_encoders.py`` and ``helpers.py`` with ``models/psp.py``, GANsNRoses
``model.py``), reading the weights by their official key names, never through henshin's
modules, so a slip in henshin's networks shows up as a different output. The StyleGAN2
modulated convolution is ``layouts._modconv`` (itself written from rosinality's model.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from layouts import IR_SE50, KERNEL, _modconv
from torch import Tensor

# -- fast-neural-style (pytorch/examples TransformerNet) --------------------------------------------------------


def reference_fns(state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """TransformerNet.forward on images in 0..255: three convs down, five residual blocks, two upsampling convs."""
    y = F.relu(_instance_norm(state, "in1", _fns_conv(state, "conv1", x, 1)))
    y = F.relu(_instance_norm(state, "in2", _fns_conv(state, "conv2", y, 2)))
    y = F.relu(_instance_norm(state, "in3", _fns_conv(state, "conv3", y, 2)))
    for i in range(1, 6):  # ResidualBlock: conv-IN-ReLU-conv-IN plus the input
        r = F.relu(_instance_norm(state, f"res{i}.in1", _fns_conv(state, f"res{i}.conv1", y, 1)))
        y = y + _instance_norm(state, f"res{i}.in2", _fns_conv(state, f"res{i}.conv2", r, 1))
    for name, norm in (
        ("deconv1", "in4"),
        ("deconv2", "in5"),
    ):  # UpsampleConvLayer: nearest ×2, then the conv
        up = y.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        y = F.relu(_instance_norm(state, norm, _fns_conv(state, name, up, 1)))
    return _fns_conv(state, "deconv3", y, 1)


def _fns_conv(state: Mapping[str, Tensor], name: str, x: Tensor, stride: int) -> Tensor:
    """ConvLayer: reflection padding of kernel // 2, then the convolution."""
    weight = state[f"{name}.conv2d.weight"]
    pad = weight.shape[-1] // 2
    return F.conv2d(
        F.pad(x, (pad,) * 4, mode="reflect"), weight, state[f"{name}.conv2d.bias"], stride=stride
    )


def _instance_norm(state: Mapping[str, Tensor], name: str, x: Tensor) -> Tensor:
    """InstanceNorm2d(affine=True): per image and channel, biased variance, eps 1e-5 (running stats unused)."""
    mean = x.mean((2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean((2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * state[f"{name}.weight"][:, None, None] + state[
        f"{name}.bias"
    ][:, None, None]


# -- encoder4editing (Encoder4Editing, IR-SE50, as pSp runs it) -------------------------------------------------


def reference_e4e(state: Mapping[str, Tensor], x: Tensor, latent_avg: Tensor | None) -> Tensor:
    """W+ (N, rows, dim) of images in [-1, 1]: ``Encoder4Editing.forward`` at the Inference stage, plus latent_avg."""
    x = F.prelu(
        _batch_norm(state, "input_layer.1", F.conv2d(x, state["input_layer.0.weight"], padding=1)),
        state["input_layer.2.weight"],
    )
    b, taps = 0, []
    for _, units in IR_SE50:  # get_blocks(50): the first unit of a block has stride 2
        for u in range(units):
            x = _bottleneck_ir_se(state, f"body.{b}", x, 2 if u == 0 else 1)
            b += 1
        taps.append(x)
    _, c1, c2, c3 = taps  # body indices 6, 20 and 23
    rows = sum(1 for k in state if k.startswith("styles.") and k.endswith(".linear.weight"))
    w0 = _style_block(state, 0, c3)
    w = w0[:, None].repeat(1, rows, 1)
    features = c3
    for i in range(1, rows):  # coarse_ind 3, middle_ind 7: the FPN's middle, then fine features
        if i == 3:
            p2 = features = _upsample_add(
                c3, F.conv2d(c2, state["latlayer1.weight"], state["latlayer1.bias"])
            )
        elif i == 7:
            features = _upsample_add(
                p2, F.conv2d(c1, state["latlayer2.weight"], state["latlayer2.bias"])
            )
        w[:, i] = w[:, i] + _style_block(state, i, features)
    return w if latent_avg is None else w + latent_avg


def _bottleneck_ir_se(state: Mapping[str, Tensor], p: str, x: Tensor, stride: int) -> Tensor:
    if f"{p}.shortcut_layer.0.weight" in state:
        shortcut = _batch_norm(
            state,
            f"{p}.shortcut_layer.1",
            F.conv2d(x, state[f"{p}.shortcut_layer.0.weight"], stride=stride),
        )
    else:  # MaxPool2d(1, stride): every stride-th pixel
        shortcut = x[:, :, ::stride, ::stride]
    r = _batch_norm(state, f"{p}.res_layer.0", x)
    r = F.prelu(
        F.conv2d(r, state[f"{p}.res_layer.1.weight"], padding=1), state[f"{p}.res_layer.2.weight"]
    )
    r = _batch_norm(
        state,
        f"{p}.res_layer.4",
        F.conv2d(r, state[f"{p}.res_layer.3.weight"], stride=stride, padding=1),
    )
    gate = F.relu(
        F.conv2d(r.mean((2, 3), keepdim=True), state[f"{p}.res_layer.5.fc1.weight"])
    )  # SEModule(16)
    gate = torch.sigmoid(F.conv2d(gate, state[f"{p}.res_layer.5.fc2.weight"]))
    return r * gate + shortcut


def _batch_norm(state: Mapping[str, Tensor], p: str, x: Tensor) -> Tensor:
    """BatchNorm2d in eval mode: the running statistics, eps 1e-5."""
    scale = state[f"{p}.weight"] / torch.sqrt(state[f"{p}.running_var"] + 1e-5)
    return (x - state[f"{p}.running_mean"][:, None, None]) * scale[:, None, None] + state[
        f"{p}.bias"
    ][:, None, None]


def _style_block(state: Mapping[str, Tensor], i: int, x: Tensor) -> Tensor:
    """GradualStyleBlock: stride-2 3×3 convs with LeakyReLU(0.01) down to 1×1, then an EqualLinear."""
    j = 0
    while f"styles.{i}.convs.{2 * j}.weight" in state:
        x = F.leaky_relu(
            F.conv2d(
                x,
                state[f"styles.{i}.convs.{2 * j}.weight"],
                state[f"styles.{i}.convs.{2 * j}.bias"],
                stride=2,
                padding=1,
            ),
            0.01,
        )
        j += 1
    weight = state[f"styles.{i}.linear.weight"]
    x = x.reshape(x.shape[0], -1)
    return x @ (weight / math.sqrt(weight.shape[1])).T + state[f"styles.{i}.linear.bias"]


def _upsample_add(x: Tensor, y: Tensor) -> Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


# -- GANs N' Roses (Generator: encoder, mapping, decoder) -------------------------------------------------------


def reference_gnr(state: Mapping[str, Tensor], faces: Tensor, styles: Tensor) -> Tensor:
    """``Generator.decode(Generator.encode(faces)[0], styles)``: faces in [-1, 1], style codes (N, 8), raw RGB."""
    return torch.cat(
        [
            _gnr_decode(state, _gnr_content(state, f[None]), s[None])
            for f, s in zip(faces, styles, strict=True)
        ]
    )


def reference_gnr_style(state: Mapping[str, Tensor], images: Tensor) -> Tensor:
    """``Generator.encoder(images)[1]``: the style code (N, 8) of the input's own look."""
    x = _gnr_stem(state, images)
    k = 0
    while f"encoder.style.{k}.1.weight" in state:  # blur + stride-2 3×3 ConvLayers down to 4×4
        x = _conv_layer(state, f"encoder.style.{k}", x, downsample=True)
        k += 1
    x = x.flatten(1)  # style.{k} is nn.Flatten
    x = _equal_linear(state, f"encoder.style.{k + 1}", x, activate=True)
    return _equal_linear(state, f"encoder.style.{k + 2}", x, activate=False)


def _gnr_stem(state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    x = _conv_layer(state, "encoder.stem.0", x)
    i = 1
    while (
        f"encoder.stem.{i}.conv1.0.weight" in state
    ):  # ResBlocks: four downsampling, then n_res plain
        p = f"encoder.stem.{i}"
        down = f"{p}.conv2.0.kernel" in state
        out = _conv_layer(state, f"{p}.conv2", _conv_layer(state, f"{p}.conv1", x), downsample=down)
        skip = (
            _conv_layer(state, f"{p}.skip", x, downsample=down)
            if f"{p}.skip.0.weight" in state or f"{p}.skip.1.weight" in state
            else x
        )
        x = (out + skip) / math.sqrt(2)
        i += 1
    return x


def _gnr_content(state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    x = _gnr_stem(state, x)
    return _conv_layer(state, "encoder.content.1", _conv_layer(state, "encoder.content.0", x))


def _gnr_decode(state: Mapping[str, Tensor], x: Tensor, z: Tensor) -> Tensor:
    w = z
    i = 0
    while f"mapping.{i}.weight" in state:  # no PixelNorm; every layer fused leaky ReLU, lr_mul 0.01
        w = _equal_linear(state, f"mapping.{i}", w, activate=True, lr_mul=0.01)
        i += 1
    j = 0
    while f"adain_bottleneck.{j}.conv1.conv.weight" in state:  # StyledResBlock
        p = f"adain_bottleneck.{j}"
        x = (_styled(state, f"{p}.conv2", _styled(state, f"{p}.conv1", x, w), w) + x) / math.sqrt(2)
        j += 1
    x = _styled(state, "conv1", x, w)
    skip = _modconv(state, "to_rgb1.conv", x, w, demodulate=False) + state["to_rgb1.bias"]
    k = 0
    while f"to_rgbs.{k}.conv.weight" in state:
        x = _styled(
            state, f"convs.{2 * k + 1}", _styled(state, f"convs.{2 * k}", x, w, upsample=True), w
        )
        rgb = (
            _modconv(state, f"to_rgbs.{k}.conv", x, w, demodulate=False)
            + state[f"to_rgbs.{k}.bias"]
        )
        up = F.conv_transpose2d(
            skip, (KERNEL * 4)[None, None].repeat(3, 1, 1, 1), stride=2, padding=1, groups=3
        )
        skip = rgb + up
        k += 1
    return skip


def _styled(
    state: Mapping[str, Tensor], p: str, x: Tensor, w: Tensor, upsample: bool = False
) -> Tensor:
    """StyledConv without noise (GANsNRoses comments it out): modulated conv, then FusedLeakyReLU."""
    x = _modconv(state, f"{p}.conv", x, w, demodulate=True, upsample=upsample)
    return F.leaky_relu(x + state[f"{p}.activate.bias"][None, :, None, None], 0.2) * math.sqrt(2)


def _conv_layer(state: Mapping[str, Tensor], p: str, x: Tensor, downsample: bool = False) -> Tensor:
    """model.py's ConvLayer: [Blur(pad), stride 2] EqualConv2d, then FusedLeakyReLU where it has a bias."""
    i = 0
    weight = state[f"{p}.{int(downsample)}.weight"]
    k = weight.shape[-1]
    if downsample:  # Blur with pad ((4 - 2) + (k - 1) + 1) // 2 and ((4 - 2) + (k - 1)) // 2
        pad0, pad1 = (2 + k - 1 + 1) // 2, (2 + k - 1) // 2
        blur = KERNEL[None, None].repeat(x.shape[1], 1, 1, 1)
        x = F.conv2d(F.pad(x, (pad0, pad1, pad0, pad1)), blur, groups=x.shape[1])
        i = 1
    x = F.conv2d(
        x,
        weight / math.sqrt(weight[0].numel()),
        stride=2 if downsample else 1,
        padding=0 if downsample else k // 2,
    )
    bias = state.get(f"{p}.{i + 1}.bias")
    if bias is None:  # the skip's ConvLayer(activate=False, bias=False)
        return x
    return F.leaky_relu(x + bias[None, :, None, None], 0.2) * math.sqrt(2)


def _equal_linear(
    state: Mapping[str, Tensor], p: str, x: Tensor, activate: bool, lr_mul: float = 1.0
) -> Tensor:
    weight, bias = state[f"{p}.weight"], state[f"{p}.bias"] * lr_mul
    x = x @ (weight * lr_mul / math.sqrt(weight.shape[1])).T
    return F.leaky_relu(x + bias, 0.2) * math.sqrt(2) if activate else x + bias
