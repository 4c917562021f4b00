"""Fast neural style (Johnson et al., as in pytorch/examples ``fast_neural_style``).

The network is the image transformation net of the pytorch/examples project,
with the same parameter names so its released checkpoints (candy, mosaic,
rain_princess, udnie) load strictly: three reflection-padded convolutions down
(9×9, then two 3×3 with stride 2), five residual blocks, two nearest-neighbour
×2 upsampling convolutions and a 9×9 convolution out, with affine instance
norm after every convolution but the last. It maps 0..255 RGB to 0..255 RGB.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from henshin.errors import ModelError
from henshin.models.checkpoints import load_checkpoint, load_state_strict

# Checkpoints saved by old torch versions carry instance-norm running statistics
# that the network does not use; the official loader drops them too.
_STALE_KEY = re.compile(r"in\d+\.running_(mean|var)$")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ModelError("the fns filter needs torch; install it with: pip install 'henshin[torch]'.") from None
    return torch


def transformer_net() -> Any:
    """A TransformerNet with the official layout and fresh (untrained) weights."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class Conv(nn.Module):
        """Reflection pad by k//2, then a convolution (keys: ``conv2d.*``)."""

        def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: int = 1) -> None:
            super().__init__()
            self.pad, self.upsample = k // 2, upsample
            self.conv2d = nn.Conv2d(cin, cout, k, stride)

        def forward(self, x: Any) -> Any:
            if self.upsample > 1:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            return self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))

    class Residual(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()
            self.conv1, self.in1 = Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)
            self.conv2, self.in2 = Conv(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True)

        def forward(self, x: Any) -> Any:
            return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))

    class TransformerNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.in1 = Conv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
            self.conv2, self.in2 = Conv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
            self.conv3, self.in3 = Conv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
            for i in range(1, 6):
                setattr(self, f"res{i}", Residual(128))
            self.deconv1, self.in4 = Conv(128, 64, 3, upsample=2), nn.InstanceNorm2d(64, affine=True)
            self.deconv2, self.in5 = Conv(64, 32, 3, upsample=2), nn.InstanceNorm2d(32, affine=True)
            self.deconv3 = Conv(32, 3, 9)

        def forward(self, x: Any) -> Any:
            y = F.relu(self.in1(self.conv1(x)))
            y = F.relu(self.in2(self.conv2(y)))
            y = F.relu(self.in3(self.conv3(y)))
            for i in range(1, 6):
                y = getattr(self, f"res{i}")(y)
            y = F.relu(self.in4(self.deconv1(y)))
            y = F.relu(self.in5(self.deconv2(y)))
            return self.deconv3(y)

    return TransformerNet()


def load_transformer(path: Path) -> Any:
    """A TransformerNet with the weights of a fast-neural-style checkpoint, loaded strictly.

    The file is read weights-only (no code from it runs); a file that is not a
    fast-neural-style checkpoint raises a ModelError naming what does not fit.
    """
    torch = _torch()
    path = Path(path)
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a fast-neural-style checkpoint: expected a state dict of tensors.")
    return load_state_strict(transformer_net(), checkpoint_filter_fn(state), "fast-neural-style", path).eval()


def checkpoint_filter_fn(state: dict[str, Any]) -> dict[str, Any]:
    """The official release's keys as this network's: stale instance-norm statistics dropped."""
    return {k: v for k, v in state.items() if not _STALE_KEY.search(k)}
