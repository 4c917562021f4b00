"""A reference face from a still picture: found, FFHQ-aligned and cut as an encoder's crop.

Filters that take a face from a picture (style mixing's ``mix=REF.jpg``) align it exactly as
the engine aligns faces in frames (``henshin.kernels.ffhq``), from mediapipe's face mesh run
once in still-image mode; the largest face in the picture is used.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from henshin.errors import BadInputError, InputNotFoundError
from henshin.kernels.ffhq import ffhq_quad, quad_matrix
from henshin.kernels.warp import crop_from_frame
from henshin.optional import import_mediapipe

MAX_FACES = 4
MIN_CONFIDENCE = 0.5


def read_picture(path: Path | str, what: str = "picture", fix: str = "check the path") -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; a missing or unreadable file is one sentence naming ``what`` it is for."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputNotFoundError(f"{what} {path} does not exist; {fix}.")
    data = np.fromfile(path, np.uint8) if path.stat().st_size else np.zeros(0, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None  # imdecode: any path the OS takes
    if image is None:
        raise BadInputError(f"{what} {path} is not a picture OpenCV can read; give a PNG, JPEG, WebP, BMP or TIFF file.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def centre_square(image: np.ndarray, size: int, upscale: int = cv2.INTER_CUBIC) -> np.ndarray:
    """The picture's centre square resized to size×size (area averaging down, ``upscale`` up)."""
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    flags = cv2.INTER_AREA if side > size else upscale
    return cv2.resize(image[y0:y0 + side, x0:x0 + side], (size, size), interpolation=flags)


def face_mesh():  # noqa: ANN201 - mediapipe's FaceMesh, imported lazily
    """mediapipe's face mesh in still-image mode (a context manager): reuse one for many pictures."""
    mp = import_mediapipe("finding the face in a picture (mediapipe's face mesh)")
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=True,
                                           min_detection_confidence=MIN_CONFIDENCE)


def find_face(image: np.ndarray, mesh: object) -> np.ndarray | None:
    """(478, 3) landmarks in pixels of the largest face in an RGB picture, or None when there is none."""
    result = mesh.process(np.ascontiguousarray(image))
    if not result.multi_face_landmarks:
        return None
    h, w = image.shape[:2]
    faces = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32)
             for f in result.multi_face_landmarks]
    return max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))


def face_landmarks(image: np.ndarray, path: Path | str = "the picture") -> np.ndarray:
    """(478, 3) landmarks in pixels of the largest face in an RGB picture; a picture without one is refused."""
    with face_mesh() as mesh:
        found = find_face(image, mesh)
    if found is None:
        raise BadInputError(f"no face was found in {path}; give a picture where a face fills a good part of it.")
    return found


def aligned_crop(image: np.ndarray, landmarks: np.ndarray, size: int = 256) -> np.ndarray:
    """The face with these landmarks as an FFHQ-aligned crop: (1, 3, size, size) float32 in [-1, 1]."""
    matrix = quad_matrix(ffhq_quad(landmarks), size)
    return crop_from_frame(image, matrix[None], size, (-1.0, 1.0), "NCHW")


def reference_crop(path: Path | str, size: int = 256) -> np.ndarray:
    """The picture's largest face as an FFHQ-aligned crop: (1, 3, size, size) float32 in [-1, 1]."""
    image = read_picture(path)
    return aligned_crop(image, face_landmarks(image, path), size)
