"""A virtual X screen for window tests: Xvfb, screenshots (xwd), keys (xdotool) and closing a window."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np

TOOLS = ("Xvfb", "xdotool", "xwd")
INSTALL = "sudo apt-get install xvfb xdotool x11-apps (make setup installs them where it can)"


def missing_tools() -> list[str]:
    """The X tools the window tests need that are not installed."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


class VirtualScreen:
    """An Xvfb server on a free display number, stopped by ``close``."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        read, write = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
                                      "-nolisten", "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            self.proc.kill()
            raise RuntimeError("Xvfb did not start")
        self.display = f":{number}"

    def env(self) -> dict[str, str]:
        """The environment for a process that draws on this screen."""
        return {**os.environ, "DISPLAY": self.display}

    def screenshot(self) -> np.ndarray:
        """The whole screen, (H, W, 3) uint8 RGB."""
        data = subprocess.run(["xwd", "-root", "-silent", "-display", self.display], capture_output=True,
                              check=True).stdout
        return read_xwd(data)

    def window(self, name: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> int:
        """The id of the window called ``name``, waiting for it to appear (while ``proc`` runs)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process ended before its window appeared: {proc.communicate()}")
            found = subprocess.run(["xdotool", "search", "--name", f"^{name}$"], capture_output=True, text=True,
                                   env=self.env())
            if found.stdout.split():
                return int(found.stdout.split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"no window {name!r} appeared")

    def geometry(self, window: int) -> tuple[int, int, int, int]:
        """(x, y, width, height) of a window on the screen."""
        out = subprocess.run(["xdotool", "getwindowgeometry", "--shell", str(window)], capture_output=True,
                             text=True, env=self.env(), check=True).stdout
        values = dict(line.split("=", 1) for line in out.split())
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def key(self, window: int, key: str) -> None:
        """Send a key press to a window, as xdotool does."""
        subprocess.run(["xdotool", "key", "--window", str(window), key], env=self.env(), check=True,
                       capture_output=True)

    def close_window(self, window: int) -> None:
        """Ask a window to close, as a window manager's close button does (WM_DELETE_WINDOW)."""
        send_delete_window(self.display, window)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def read_xwd(data: bytes) -> np.ndarray:
    """A TrueColor XWD screen dump as (H, W, 3) uint8 RGB."""
    header = struct.unpack(">25I", data[:100])
    header_size, width, height, byte_order = header[0], header[4], header[5], header[7]
    bits_per_pixel, bytes_per_line, ncolors = header[11], header[12], header[19]
    start = header_size + ncolors * 12
    step = bits_per_pixel // 8
    rows = np.frombuffer(data[start:start + bytes_per_line * height], np.uint8).reshape(height, bytes_per_line)
    pixels = rows[:, :width * step].reshape(height, width, step)
    order = [2, 1, 0] if byte_order == 0 else [step - 3, step - 2, step - 1]  # LSBFirst: B, G, R (then pad)
    return np.ascontiguousarray(pixels[..., order])


class _ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _Event(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def send_delete_window(display: str, window: int) -> None:
    """Send WM_PROTOCOLS/WM_DELETE_WINDOW to ``window`` through libX11 (what a close button sends)."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(_Event)]
    x11.XFlush.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    conn = x11.XOpenDisplay(display.encode())
    if not conn:
        raise RuntimeError(f"cannot open display {display}")
    try:
        event = _Event()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.message_type = x11.XInternAtom(conn, b"WM_PROTOCOLS", False)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(conn, b"WM_DELETE_WINDOW", False)
        x11.XSendEvent(conn, window, False, 0, ctypes.byref(event))
        x11.XFlush(conn)
    finally:
        x11.XCloseDisplay(conn)


def picture_detail(image: np.ndarray) -> tuple[int, float]:
    """(distinct colours, fraction of edge pixels): a video frame has thousands and some; an empty canvas neither."""
    import cv2

    colours = len(np.unique(image.reshape(-1, 3) // 4, axis=0))
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 50, 150)
    return colours, float((edges > 0).mean())


def save_png(image: np.ndarray, path: Path) -> None:
    """Keep a screenshot for a person to look at."""
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
