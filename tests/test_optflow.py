"""Optical flow, occlusion checks and flow-guided blending: the kernels, on the CPU and on a GPU.

Nothing here needs mediapipe: these run wherever torch and OpenCV do (the GPU tests too).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from henshin.engine.temporal import Previous, blend_with_previous
from henshin.kernels.optflow import consistent, optical_flow, to_grey, warp_by_flow
from henshin.samples import portrait
from henshin.types import FilterSpec

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _shifted(dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    a = portrait()[100:356, 100:356]
    b = cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), (256, 256), borderMode=cv2.BORDER_REFLECT)
    return a, b


def test_the_flow_finds_a_known_shift_on_both_paths():
    a, b = _shifted(3.0, -2.0)
    ga, gb = to_grey(a), to_grey(b)
    for flow in (optical_flow(ga, gb), optical_flow(torch.from_numpy(ga), torch.from_numpy(gb)).numpy()):
        assert np.allclose(np.median(flow[32:-32, 32:-32].reshape(-1, 2), 0), [3.0, -2.0], atol=0.3)
        warped = warp_by_flow(b.astype(np.float32), flow)
        assert np.abs(warped - a)[32:-32, 32:-32].mean() < np.abs(b.astype(np.float32) - a)[32:-32, 32:-32].mean() / 3


def test_consistency_marks_what_the_flows_disagree_on():
    backward = np.zeros((32, 32, 2), np.float32)
    forward = np.zeros((32, 32, 2), np.float32)
    forward[8:16, 8:16] = 5.0  # a patch that moved forward but not back: occluded
    ok = consistent(backward, forward)
    assert ok[8:16, 8:16].max() == 0 and ok[20:, 20:].min() == 1


def test_blending_follows_the_motion_of_the_input():
    # The previous output is the previous input's negative; the current one is moved 3 px right. With
    # full weight, the blend must be the previous output moved the same way, not left where it was.
    a, b = _shifted(3.0, 0.0)
    spec = FilterSpec(consumes="frame", value_range=(0.0, 255.0), layout="NHWC")
    before_in, now_in = a.astype(np.float32), b.astype(np.float32)
    before_out = 255.0 - before_in
    blended = blend_with_previous(spec, now_in, np.zeros_like(now_in), Previous(before_in, before_out, None),
                                  None, 1.0)
    inner = (slice(32, -32), slice(32, -32))
    followed = np.abs(blended - (255.0 - now_in))[inner].mean()
    assert followed < 0.5 * np.abs(blended - before_out)[inner].mean() and followed < 10


def test_blending_composes_the_crop_to_crop_motion():
    # Two crops of one picture, the second cut 4 px further right: the crop-to-crop affine alone
    # explains the motion, and the blended output lines up with the current crop.
    frame = portrait().astype(np.float32)
    before_m = np.array([[1.0, 0, -100], [0, 1.0, -100]])
    now_m = np.array([[1.0, 0, -104], [0, 1.0, -100]])
    crop = lambda m, img: cv2.warpAffine(img, m, (256, 256))  # noqa: E731
    spec = FilterSpec(consumes="crops", size=256, value_range=(0.0, 255.0), layout="NHWC")
    prev = Previous(crop(before_m, frame), crop(before_m, 255.0 - frame), before_m)
    blended = blend_with_previous(spec, crop(now_m, frame), np.zeros((256, 256, 3), np.float32), prev, now_m, 1.0)
    assert np.abs(blended - crop(now_m, 255.0 - frame))[24:-24, 24:-24].mean() < 4


@cuda
@pytest.mark.gpu
def test_the_gpu_flow_finds_a_known_shift_on_the_device():
    a, b = _shifted(-2.5, 1.5)
    ga, gb = (torch.from_numpy(to_grey(x)).cuda() for x in (a, b))
    flow = optical_flow(ga, gb)
    assert flow.is_cuda and flow.shape == (256, 256, 2)
    assert np.allclose(flow[32:-32, 32:-32].reshape(-1, 2).median(0).values.cpu().numpy(), [-2.5, 1.5], atol=0.3)


DEVICES = [("cpu", torch.float32),
           pytest.param("cuda", torch.float16, marks=[cuda, pytest.mark.gpu], id="cuda")]


@pytest.mark.parametrize("device, dtype", DEVICES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_torch_blending_stays_on_the_device_and_agrees_with_opencv(layout, device, dtype):
    # Same inputs on both paths (their flows differ: DIS with OpenCV, Lucas–Kanade in torch), so
    # both must follow the motion; and the result keeps the item's device, dtype and layout.
    a, b = _shifted(3.0, -1.0)
    spec = FilterSpec(consumes="frame", value_range=(0.0, 255.0), layout=layout)

    def item(x):
        x = x.astype(np.float32)
        return x.transpose(2, 0, 1) if layout == "NCHW" else x

    before_in, now_in = item(a), item(b)
    before_out, target = 255.0 - before_in, 255.0 - now_in
    cpu = blend_with_previous(spec, now_in, np.zeros_like(now_in), Previous(before_in, before_out, None), None, 1.0)
    t = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, dtype)
         for k, v in (("before_in", before_in), ("now_in", now_in), ("before_out", before_out))}
    gpu = blend_with_previous(spec, t["now_in"], torch.zeros_like(t["now_in"]),
                              Previous(t["before_in"], t["before_out"], None), None, 1.0)
    assert gpu.device.type == device and gpu.dtype == dtype and gpu.shape == t["now_in"].shape
    inner = (slice(None), slice(32, -32), slice(32, -32)) if layout == "NCHW" else (slice(32, -32), slice(32, -32))
    gpu = gpu.float().cpu().numpy()  # the torch path's result
    for out in (cpu, gpu):
        assert np.abs(out - target)[inner].mean() < 0.5 * np.abs(out - before_out)[inner].mean()
    # Where they trust their flows alike they agree; they differ where one path trusts less (its tail).
    assert np.median(np.abs(gpu - cpu)[inner]) < 6
