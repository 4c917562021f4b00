"""Per-pixel kernels: the torch path against the NumPy/OpenCV reference, behind one signature."""

from __future__ import annotations

import numpy as np
import pytest

from henshin.engine.align import quad_matrix
from henshin.kernels.blend import blend_into, match_colour
from henshin.kernels.masks import _feather_torch, blur, feather_mask, fill_polygon
from henshin.kernels.warp import (
    batch_to_image,
    batch_to_pixels,
    crop_from_frame,
    frame_from_crop,
    frame_to_batch,
    quad_roi,
)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A smooth, textured 240x320 picture (bilinear paths agree on smooth content)."""
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    rgb = np.stack([128 + 100 * np.sin(x / 23.0), 128 + 100 * np.cos(y / 17.0), 128 + 60 * np.sin((x + y) / 31.0)], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _devices() -> list:
    """cpu, and cuda marked gpu: reported as skipped where there is no CUDA, run on a GPU machine."""
    no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, no_cuda])]


@pytest.mark.parametrize("device", _devices())
def test_crop_torch_matches_opencv(picture, device):
    matrix = quad_matrix(np.array([160.0, 120.0, 60.0, 12.0]), 128)  # upscaling: both bilinear
    want = crop_from_frame(picture, matrix[None], 128, (0.0, 1.0))
    got = crop_from_frame(torch.from_numpy(picture).to(device), matrix[None], 128, (0.0, 1.0))
    assert isinstance(got, torch.Tensor) and got.device.type == device and got.shape == want.shape
    assert np.abs(got.cpu().numpy() - want)[..., 4:-4, 4:-4].max() < 2.5 / 255


def test_crop_lands_in_the_asked_range_and_layout(picture):
    matrix = quad_matrix(np.array([160.0, 120.0, 60.0, 0.0]), 64)
    nchw = crop_from_frame(picture, matrix[None], 64, (-1.0, 1.0))
    nhwc = crop_from_frame(picture, matrix[None], 64, (0.0, 255.0), "NHWC")
    assert nchw.shape == (1, 3, 64, 64) and nhwc.shape == (1, 64, 64, 3)
    np.testing.assert_allclose((nchw[0].transpose(1, 2, 0) + 1) * 127.5, nhwc[0], atol=1e-3)
    assert -1.0 <= nchw.min() and nchw.max() <= 1.0


@pytest.mark.parametrize("device", _devices())
def test_frame_batch_round_trips(picture, device):
    for value_range, layout in (((0.0, 1.0), "NCHW"), ((-1.0, 1.0), "NHWC"), ((0.0, 255.0), "NCHW")):
        batch = frame_to_batch(picture, value_range, layout)
        assert np.array_equal(batch_to_image(batch[0], value_range, layout), picture)
        tensor = frame_to_batch(torch.from_numpy(picture).to(device), value_range, layout)
        assert np.array_equal(batch_to_image(tensor[0], value_range, layout).cpu().numpy(), picture)


@pytest.mark.parametrize("device", _devices())
def test_paste_back_torch_matches_opencv(picture, device):
    matrix = quad_matrix(np.array([160.0, 120.0, 60.0, 12.0]), 128)
    crop = crop_from_frame(picture, matrix[None], 128, (0.0, 1.0))[0]
    roi = quad_roi(matrix, 128, picture.shape[:2])
    want = frame_from_crop(batch_to_pixels(crop, (0.0, 1.0)), matrix, roi)
    got = frame_from_crop(batch_to_pixels(torch.from_numpy(crop).to(device), (0.0, 1.0)), matrix, roi)
    assert np.abs(got.cpu().numpy() - want)[8:-8, 8:-8].max() < 1.0
    # and it lands back on the picture it was cut from
    x0, y0, x1, y1 = roi
    assert np.abs(want - picture[y0:y1, x0:x1])[12:-12, 12:-12].mean() < 1.5


@pytest.mark.parametrize("device", _devices())
def test_blend_keeps_exact_bytes_where_alpha_is_zero(picture, device):
    rng = np.random.default_rng(0)
    src = rng.random((240, 320, 3), dtype=np.float32) * 255
    alpha = np.zeros((240, 320), np.float32)
    alpha[60:180, 80:240] = rng.random((120, 160), dtype=np.float32)
    want = picture.copy()
    blend_into(want, src, alpha)
    assert np.array_equal(want[alpha == 0], picture[alpha == 0])
    expected = np.floor(picture + (src - picture) * alpha[..., None] + 0.5).clip(0, 255)
    assert np.abs(want.astype(float) - expected).max() <= 1
    got = torch.from_numpy(picture.copy()).to(device)
    blend_into(got, torch.from_numpy(src).to(device), torch.from_numpy(alpha).to(device))
    assert np.abs(got.cpu().numpy().astype(int) - want).max() <= 1



@pytest.mark.parametrize("device", _devices())
def test_background_paste_leaves_the_frame_as_it_was(picture, device):
    from henshin.engine.composite import paste_background
    from henshin.types import FilterSpec

    rng = np.random.default_rng(1)
    result = torch.rand(3, 240, 320, generator=torch.Generator().manual_seed(1)).to(device)
    people = rng.random((240, 320), dtype=np.float32)
    spec = FilterSpec(consumes="frame", array="torch", value_range=(0.0, 1.0))
    frame = picture.copy()
    from_host = paste_background(frame, result, people, spec)
    on_device = torch.from_numpy(picture.copy()).to(device)
    from_device = paste_background(on_device, result, people, spec)
    assert np.array_equal(frame, picture)  # the caller's frame is not written into (CPU torch shares its memory)
    assert np.array_equal(on_device.cpu().numpy(), picture)
    assert torch.equal(from_host, from_device)
    assert np.abs(from_host.cpu().numpy().astype(int) - picture).max() > 50  # the background did change

def test_colour_statistics_from_a_subsample_match_the_full_ones(picture):
    rng = np.random.default_rng(1)
    src = picture.astype(np.float32) * 0.7 + 40
    weight = fill_polygon(np.array([[40, 30], [280, 40], [260, 210], [60, 200]], float), (240, 320))
    weight = weight * rng.uniform(0.5, 1.0, weight.shape).astype(np.float32)
    got = match_colour(src, picture.astype(np.float32), weight)
    w = weight[..., None]
    mean_src, mean_ref = (src * w).sum((0, 1)) / w.sum(), (picture * w).sum((0, 1)) / w.sum()
    std_src = np.sqrt((((src - mean_src) ** 2) * w).sum((0, 1)) / w.sum())
    std_ref = np.sqrt((((picture - mean_ref) ** 2) * w).sum((0, 1)) / w.sum())
    full = (src - mean_src) * (std_ref / std_src) + mean_ref
    assert np.abs(got - full).mean() < 1.0
    assert np.array_equal(match_colour(src, picture.astype(np.float32), weight, 0.0), src)


def test_feathered_mask_ramps_from_the_eroded_edge_inwards():
    square = np.array([[50.0, 50.0], [250.0, 50.0], [250.0, 190.0], [50.0, 190.0]])
    roi = (0, 0, 300, 240)
    mask = feather_mask(square, roi, 10.0, 30.0)
    row = mask[120]
    assert row[:50].max() == 0 and row[50:60].max() == 0  # outside, and the first 10 px inside
    assert row[80:220].min() == pytest.approx(1.0)  # 30 px in and beyond
    assert 0.2 < row[70] < 0.8  # half-way up the ramp
    assert np.all(np.diff(row[55:85]) >= 0)


@pytest.mark.parametrize("device", _devices())
def test_feathered_mask_on_the_gpu_path_matches_the_distance_transform(device):
    oval = np.stack([150 + 90 * np.cos(t := np.linspace(0, 2 * np.pi, 36, endpoint=False)), 120 + 70 * np.sin(t)], 1)
    roi = (40, 30, 260, 210)
    want = feather_mask(oval, roi, 5.0, 25.0)
    got = _feather_torch(oval, roi, 5.0, 25.0, device).cpu().numpy()  # the exact distance to the edges
    assert np.abs(got - want).max() < 0.1 and np.abs(got - want).mean() < 0.01
    assert isinstance(feather_mask(oval, roi, 5.0, 25.0, device=torch.device(device)), torch.Tensor)


@pytest.mark.parametrize("sigma", [1.1, 3.0, 3.8])
def test_a_blurred_mask_never_exceeds_one(sigma):
    """A block of ones blurred by OpenCV came out 1.0000001-1.0000002 inside at these sigmas (float
    sums), which a transfer strength of 0.5 turned into a mask above 0.5."""
    mask = np.zeros((80, 120), np.float32)
    mask[10:70, 10:110] = 1
    out = blur(mask, sigma)
    assert out.max() <= 1.0 and out[40, 60] == pytest.approx(1.0)
    torch = pytest.importorskip("torch")
    assert float(blur(torch.from_numpy(mask), sigma).max()) <= 1.0
