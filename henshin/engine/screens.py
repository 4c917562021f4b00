"""Outputs to screens: a virtual camera (pyvirtualcam) and a preview window (OpenCV HighGUI).

The preview stays with OpenCV's HighGUI: it ships in the OpenCV wheel henshin
already needs (Qt on Linux, Cocoa on macOS, Win32 on Windows), shows a NumPy
frame in one call and reads keys; what it needs is its event loop on the main
thread, which the schedulers give it through ``pump``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from henshin.errors import OptionError, RuntimeUnavailableError
from henshin.types import Frame

log = logging.getLogger("henshin")

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


# Preview keys → control commands (see henshin.engine.chains.apply_command); ``b`` is the window's own.
PREVIEW_KEYS = {
    ord("q"): "quit", 27: "quit", ord(" "): "toggle",
    ord("n"): "step style 1", ord("p"): "step style -1",
    ord("+"): "step strength 0.1", ord("="): "step strength 0.1", ord("-"): "step strength -0.1",
    ord("f"): "next-filter",
}
COMPARE_KEY = ord("b")
SHOW_WAIT_S = 2.0  # longest a frame waits for the window's thread before it is skipped
KEY_POLL_MS = 5  # the event loop's tick: keys, repaint and a waiting frame at most this late


def check_display() -> None:
    """On Linux, refuse a preview without a reachable X display (OpenCV's Qt would abort the process)."""
    if not sys.platform.startswith("linux"):
        return
    display = os.environ.get("DISPLAY")
    if not display:
        where = " (a Wayland session needs XWayland)" if os.environ.get("WAYLAND_DISPLAY") else ""
        raise OptionError(f"no X display for the preview window: DISPLAY is not set{where}; "
                          "use --sink vcam or --sink null.")
    if _x_display_opens(display) is False:
        raise OptionError(f"the preview window cannot open the display DISPLAY={display} (no X server answers "
                          "there); check DISPLAY, or use --sink vcam or --sink null.")


def _x_display_opens(display: str) -> bool | None:
    """Whether libX11 connects to ``display``; None when libX11 is not there to ask."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    try:
        x11 = ctypes.CDLL(name)
    except OSError:
        return None
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    conn = x11.XOpenDisplay(display.encode())
    if not conn:
        return False
    x11.XCloseDisplay(conn)
    return True


class PreviewSink:
    """An OpenCV window showing the output; its keys become control commands, closing it quits.

    GUI toolkits serve a window only from the thread that runs their event
    loop, the main thread (Qt on Linux, Cocoa on macOS): ``write``, called from
    the scheduler's output thread, hands the frame over and waits until it is
    on screen, while ``pump``, called by the scheduler on the main thread, runs
    the event loop and shows it. ``b`` toggles a side-by-side view, original | filtered.
    Closing the window calls ``on_close`` (default: the ``quit`` command); the
    frame in flight at that moment is the only one sent and not shown.
    """

    repeats = False

    def __init__(self, on_command: Callable[[str], None], title: str = "henshin", compare: bool = False,
                 on_close: Callable[[], None] | None = None) -> None:
        check_display()
        self._title, self._on_command = title, on_command
        self._on_close = on_close or (lambda: on_command("quit"))  # closing the window is `q`, at once
        self.compare = compare
        self.shown = 0  # frames put on screen
        self.closed = False  # the user closed the window
        self._pending: tuple[Frame, np.ndarray] | None = None
        self._ready = threading.Condition()
        self._size: tuple[int, int] | None = None
        self._skipped = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)

    # -- the output thread -----------------------------------------------------------------------

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Hand a frame to the window's thread and wait until it is shown (or the window is gone)."""
        with self._ready:
            if self.closed:
                return
            self._pending = (frame, image)
            self._ready.notify_all()
            shown = self._ready.wait_for(lambda: self._pending is None or self.closed, timeout=SHOW_WAIT_S)
            if not shown:
                self._pending = None
                if not self._skipped:
                    self._skipped = True
                    log.warning("the preview window is not being served (its event loop must run on the main "
                                "thread); frames are skipped.")

    # -- the main thread ---------------------------------------------------------------------------

    def pump(self, seconds: float) -> None:
        """Run the window's event loop for about ``seconds``: show a waiting frame, read keys, notice a close."""
        end = time.monotonic() + seconds
        while not self.closed:
            with self._ready:
                item = self._pending
            if item is not None:
                self._show(*item)
                with self._ready:
                    self._pending = None
                    self.shown += 1
                    self._ready.notify_all()
            self._key(cv2.waitKey(KEY_POLL_MS))
            if self._size is not None and self._window_gone():
                with self._ready:
                    self.closed = True
                    self._ready.notify_all()
                self._on_close()
            if time.monotonic() >= end:
                return
        # Closed (a conversion goes on without its preview): wait out the time, so the caller does not spin.
        time.sleep(max(0.0, end - time.monotonic()))

    def close(self) -> None:
        if not self.closed:
            cv2.destroyWindow(self._title)
            cv2.waitKey(1)  # let the toolkit take the window down
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def abort(self) -> None:
        self.close()

    # -- inside ------------------------------------------------------------------------------------

    def _show(self, frame: Frame, image: np.ndarray) -> None:
        picture = np.hstack([frame.image, image]) if self.compare and frame.image.shape == image.shape else image
        size = (picture.shape[1], picture.shape[0])
        if size != self._size:
            cv2.resizeWindow(self._title, *size)  # a normal window keeps its size: follow the picture's
            self._size = size
        cv2.imshow(self._title, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    def _key(self, code: int) -> None:
        if code < 0:
            return
        key = code & 0xFF
        if key == COMPARE_KEY:
            self.compare = not self.compare
        elif key in PREVIEW_KEYS:
            self._on_command(PREVIEW_KEYS[key])

    def _window_gone(self) -> bool:
        try:
            return cv2.getWindowProperty(self._title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True
