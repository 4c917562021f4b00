"""Outputs to screens: a virtual camera (pyvirtualcam) and a preview window (OpenCV)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import cv2
import numpy as np

from henshin.errors import OptionError, RuntimeUnavailableError
from henshin.types import Frame

VCAM_HELP = {
    "linux": "install and load v4l2loopback: sudo apt install v4l2loopback-dkms && "
             "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=henshin",
    "win32": "install OBS Studio (26 or newer) and start its Virtual Camera once",
    "darwin": "install OBS Studio (30 or newer) and start its Virtual Camera once",
}


class VirtualCameraSink:
    """Frames to a virtual camera that video-call apps can pick, via pyvirtualcam."""

    repeats = True

    def __init__(self, width: int, height: int, fps: float, device: str | None = None,
                 backend: str | None = None) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            raise RuntimeUnavailableError(
                "the virtual camera needs pyvirtualcam; install it with: pip install pyvirtualcam"
            ) from None
        try:
            self._cam = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                            device=device, backend=backend)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = VCAM_HELP.get(sys.platform, "install OBS Studio and start its Virtual Camera once")
            where = f" {device}" if device else ""
            raise RuntimeUnavailableError(f"no virtual camera{where} could be opened ({first}); {hint}.") from None
        self.device = self._cam.device

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self._cam.send(np.ascontiguousarray(image))

    def close(self) -> None:
        self._cam.close()

    def abort(self) -> None:
        self._cam.close()


# Preview keys → control commands (see henshin.engine.chains.apply_command).
PREVIEW_KEYS = {
    ord("q"): "quit", 27: "quit", ord(" "): "toggle",
    ord("n"): "step style 1", ord("p"): "step style -1",
    ord("+"): "step strength 0.1", ord("="): "step strength 0.1", ord("-"): "step strength -0.1",
    ord("f"): "next-filter",
}


class PreviewSink:
    """An OpenCV window showing the output; its keys become control commands."""

    repeats = False

    def __init__(self, on_command: Callable[[str], None], title: str = "henshin") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise OptionError("no display for the preview window (DISPLAY is not set); use --sink vcam or --sink null.")
        self._title, self._on_command = title, on_command
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        cv2.imshow(self._title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in PREVIEW_KEYS:
            self._on_command(PREVIEW_KEYS[key])

    def close(self) -> None:
        cv2.destroyWindow(self._title)

    def abort(self) -> None:
        self.close()
