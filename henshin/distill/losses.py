"""The student's losses, none needing a download: L1, MS-SSIM, image-gradient L1, and shift/scale consistency.

MS-SSIM follows Wang, Simoncelli & Bovik (2003): SSIM's contrast-structure term at
each scale and its luminance term at the coarsest, Gaussian window 11 with σ 1.5,
C1 = (0.01)², C2 = (0.03)² for images in [0, 1]; the scale weights are the paper's
first ones, renormalised for the scales a training crop can hold.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, table 1
C1, C2 = 0.01**2, 0.03**2
WINDOW, SIGMA = 11, 1.5


def _gaussian(device: torch.device) -> torch.Tensor:
    x = torch.arange(WINDOW, dtype=torch.float32, device=device) - (WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SIGMA**2))
    return (g / g.sum()).view(1, 1, 1, WINDOW).repeat(3, 1, 1, 1)


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian, valid region only (as the reference implementation)."""
    x = F.conv2d(x, g, groups=3)
    return F.conv2d(x, g.transpose(2, 3), groups=3)


def _ssim_parts(
    x: torch.Tensor, y: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: mean SSIM and mean contrast-structure term."""
    mx, my = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mx * mx
    syy = _filter(y * y, g) - my * my
    sxy = _filter(x * y, g) - mx * my
    cs = (2 * sxy + C2) / (sxx + syy + C2)
    ssim = (2 * mx * my + C1) / (mx * mx + my * my + C1) * cs
    return ssim.flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per image of (N, 3, H, W) in [0, 1]."""
    return _ssim_parts(x, y, _gaussian(x.device))[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean MS-SSIM per image, over as many scales (up to 5) as the side allows (each ≥ 2 windows)."""
    scales = 1
    while scales < len(MS_WEIGHTS) and min(x.shape[-2:]) // 2**scales >= 2 * WINDOW:
        scales += 1
    weights = torch.tensor(MS_WEIGHTS[:scales], device=x.device)
    weights = weights / weights.sum()
    g = _gaussian(x.device)
    values = []
    for k in range(scales):
        s, cs = _ssim_parts(x, y, g)
        values.append(s if k == scales - 1 else cs)
        if k < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, 1).clamp(min=1e-6)  # negative cs would make the power undefined
    return torch.prod(stacked**weights, dim=1)


def gradient_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical differences of two images: edges and texture, not colour."""
    dx = (x[..., :, 1:] - x[..., :, :-1]) - (y[..., :, 1:] - y[..., :, :-1])
    dy = (x[..., 1:, :] - x[..., :-1, :]) - (y[..., 1:, :] - y[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def random_similarity(
    n: int,
    generator: torch.Generator,
    shift: float = 0.04,
    scale: float = 0.05,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(n, 2, 3) affine grids' thetas: a small random scale and shift each (normalised coordinates)."""
    s = torch.exp((torch.rand(n, generator=generator) * 2 - 1) * scale)
    t = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift * 2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = s, s
    theta[:, :, 2] = t
    return theta.to(device)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` resampled through the affine ``theta`` (zeros outside)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def consistency(
    student: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, theta: torch.Tensor
) -> torch.Tensor:
    """The student's output for a shifted and scaled crop against the same shift and scale of its output.

    Compared inside the region both cover (where the warped mask is whole), so the
    zeros brought in at the border do not count.
    """
    moved = warp(x, theta)
    valid = (warp(torch.ones_like(x[:, :1]), theta) > 0.999).float()
    diff = (student(moved) - warp(out, theta)).abs() * valid
    return diff.sum() / (valid.sum() * x.shape[1]).clamp(min=1.0)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of (N, 3, H, W) in [0, 1]."""
    mse = ((x - y) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return 10 * torch.log10(1.0 / mse)
