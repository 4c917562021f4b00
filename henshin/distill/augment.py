"""What varies the teacher's inputs: the crop's window and the frame's look, drawn per pair.

The changes are made to the *input* before the teacher sees it, never to a teacher's
output on its own: a style or a GAN does not commute with a rotation, a blur or a JPEG
round trip, so only the teacher's own output for the changed input is a true target.

Geometry moves the crop window (the tracked square rotated, scaled and shifted a
little: the alignment jitter a live tracker has); the look changes the frame's pixels
(brightness, contrast, per-channel colour, blur, JPEG compression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    """How far each change goes (0 turns it off); probabilities for blur and JPEG."""

    rotate_deg: float = 6.0
    scale: float = 0.06
    shift: float = 0.05  # of the square's half side
    brightness: float = 0.12  # of the full range, either way
    contrast: float = 0.15
    colour: float = 0.06  # per-channel gain
    blur: float = 0.25  # probability of a Gaussian blur (sigma 0.4..1.4 frame pixels)
    jpeg: float = 0.3  # probability of a JPEG round trip (quality 35..90)


NONE = Augment(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def move_quad(quad: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """The square (cx, cy, ax, ay) turned, scaled and shifted about its centre by a random small amount."""
    cx, cy, ax, ay = (float(v) for v in quad)
    half = math.hypot(ax, ay)
    angle = math.radians(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    scale = math.exp(rng.uniform(-aug.scale, aug.scale))
    cos, sin = math.cos(angle), math.sin(angle)
    ax2, ay2 = scale * (cos * ax - sin * ay), scale * (sin * ax + cos * ay)
    dx, dy = rng.uniform(-aug.shift, aug.shift, 2) * half
    return np.array([cx + dx, cy + dy, ax2, ay2], np.float64)


def change_look(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """A copy of an (H, W, 3) uint8 frame with random brightness, contrast, colour, blur and compression."""
    out = image.astype(np.float32)
    gain = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
    colour = 1.0 + rng.uniform(-aug.colour, aug.colour, 3).astype(np.float32)
    mean = out.mean(axis=(0, 1), keepdims=True)
    out = (out - mean) * gain + mean  # contrast about the frame's mean keeps its brightness
    out *= colour
    out += 255.0 * rng.uniform(-aug.brightness, aug.brightness)
    result = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < aug.blur:
        result = cv2.GaussianBlur(result, (0, 0), rng.uniform(0.4, 1.4))
    if rng.random() < aug.jpeg:
        quality = int(rng.integers(35, 91))
        ok, data = cv2.imencode(
            ".jpg", cv2.cvtColor(result, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if ok:
            result = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return result
