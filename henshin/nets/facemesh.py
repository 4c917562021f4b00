"""mediapipe's face detectors (BlazeFace short and full range) and face mesh, and their decoding, in torch.

The networks are mediapipe's own, read from the TFLite files of its wheel (``henshin.nets.tflite``).
What the graphs around them do is written here from mediapipe's graph files
(``face_detection.pbtxt`` with the options of ``face_detection_short_range.pbtxt`` and
``face_detection_full_range.pbtxt``, ``face_landmark_*.pbtxt``) and calculators:

- detection input: the frame letterboxed into the detector's square (128×128 short range,
  192×192 full range; aspect kept, zero border), RGB in [-1, 1];
- SSD anchors (``SsdAnchorsCalculator``, fixed size, anchor centres): short range 4 layers of
  strides 8/16/16/16, two anchors per layer (16·16·2 + 8·8·6 = 896); full range one layer of
  stride 4, one anchor a cell (no interpolated-scale anchor: 48·48 = 2304); boxes decoded with
  the input's side as scale and the anchor centre (``TensorsToDetectionsCalculator``, x before
  y), scores sigmoid of the logit clipped to ±100, kept from 0.5 (the Python solution's
  ``min_detection_confidence``, which replaces the graphs' 0.5 and 0.6);
- weighted non-maximum suppression (``NonMaxSuppressionCalculator`` WEIGHTED, IoU > 0.3): each
  kept detection is the score-weighted mean of the boxes and keypoints it suppresses, with the
  best one's score;
- ROI: the detection's box turned so the eyes are level, scaled 1.5×, squared on the long side;
  from landmarks, the landmarks' box turned by the eye corners (33 → 263);
- mesh input: the ROI cut to 192×192 (corners of the rotated rectangle to the corners of the
  output, mediapipe's convention), RGB in [0, 1], border replicated; 468 points (x, y, z) in
  pixels of the crop and a face-presence logit.

All of it is batched over faces and frames: one ``grid_sample`` cuts every ROI of a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from henshin.errors import ModelError
from henshin.nets.tflite import TFLiteNet

MESH_SIZE = 192
MESH_POINTS = 468
MIN_SCORE = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.5
SCORE_CLIP = 100.0
EYE_CORNERS = (33, 263)  # left side of the left eye, right side of the right eye


@dataclass(frozen=True)
class DetectorSpec:
    """One of mediapipe's face detectors: its input side and its anchor layers, (stride, anchors
    per cell) with the layers of one stride merged (they share a grid)."""

    name: str
    size: int
    layers: tuple[tuple[int, int], ...]


SHORT_RANGE = DetectorSpec("short range", 128, ((8, 2), (16, 6)))
FULL_RANGE = DetectorSpec("full range", 192, ((4, 1),))
DETECTORS = {d.size: d for d in (SHORT_RANGE, FULL_RANGE)}


def ssd_anchors(detector: DetectorSpec = FULL_RANGE) -> Tensor:
    """The detector's anchor centres (A, 2), x then y, normalised to [0, 1]."""
    rows = []
    for stride, per_cell in detector.layers:
        cells = -(-detector.size // stride)
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        centres = torch.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], dim=-1).reshape(-1, 1, 2)
        rows.append(centres.expand(-1, per_cell, 2).reshape(-1, 2))
    return torch.cat(rows).float()


@dataclass
class Detections:
    """Faces found in one image, normalised to the image: boxes (K, 4) xmin, ymin, xmax, ymax;
    keypoints (K, 6, 2) (eyes, nose tip, mouth, ears); scores (K,)."""

    boxes: Tensor
    keypoints: Tensor
    scores: Tensor


def decode_detections(
    regressors: Tensor, logits: Tensor, anchors: Tensor, size: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Raw outputs (N, A, 16) and (N, A, 1) of a detector with input side ``size`` to boxes
    (N, A, 4), keypoints (N, A, 6, 2) and scores (N, A)."""
    raw = regressors / size
    centre = raw[..., 0:2] + anchors
    size = raw[..., 2:4]
    boxes = torch.cat([centre - size / 2, centre + size / 2], dim=-1)
    keypoints = raw[..., 4:16].reshape(*raw.shape[:-1], 6, 2) + anchors[:, None, :]
    scores = torch.sigmoid(logits[..., 0].clamp(-SCORE_CLIP, SCORE_CLIP))
    return boxes, keypoints, scores


def weighted_nms(
    boxes: Tensor,
    keypoints: Tensor,
    scores: Tensor,
    min_score: float = MIN_SCORE,
    iou_threshold: float = NMS_IOU,
) -> Detections:
    """mediapipe's weighted NMS on one image's candidates (the loop runs over the few kept faces)."""
    keep = scores >= min_score
    boxes, keypoints, scores = boxes[keep], keypoints[keep], scores[keep]
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    out_boxes, out_points, out_scores = [], [], []
    remaining = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    while bool(remaining.any()):
        top = int(torch.nonzero(remaining)[0])
        overlap = box_iou(boxes[top : top + 1], boxes)[0]
        cluster = remaining & (overlap > iou_threshold)
        cluster[top] = True
        weights = scores * cluster
        total = weights.sum()
        out_boxes.append((boxes * weights[:, None]).sum(0) / total)
        out_points.append((keypoints * weights[:, None, None]).sum(0) / total)
        out_scores.append(scores[top])
        remaining &= ~cluster
    if not out_scores:
        return Detections(boxes.new_zeros(0, 4), keypoints.new_zeros(0, 6, 2), scores.new_zeros(0))
    return Detections(torch.stack(out_boxes), torch.stack(out_points), torch.stack(out_scores))


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes (A, 4) against (B, 4), xmin/ymin/xmax/ymax."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-12)


def letterbox(images: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Frames (N, 3, H, W) in [0, 255] to the detector's input (N, 3, size, size) in [-1, 1], the
    aspect kept (black bars), and the (scale, offset) per frame that maps its points back: (N, 4).

    As mediapipe does: the frame's centred square of side max(H, W) warped to size×size with plain
    bilinear sampling (no low-pass first) and a zero border.
    """
    n, _, h, w = images.shape
    side = max(h, w)
    rois = Rois(
        images.new_tensor([[w / 2, h / 2]]).expand(n, 2).float(),
        images.new_full((n,), float(side)).float(),
        images.new_zeros(n).float(),
    )
    matrices = roi_matrices(rois, size)
    index = torch.arange(n, device=images.device)
    inputs = warp_squares(images.float(), index, matrices, size, border="zeros")
    # normalised detector coordinates -> normalised frame coordinates
    mapping = images.new_tensor(
        [side / w, side / h, (side - w) / (2 * side), (side - h) / (2 * side)]
    ).float()
    return inputs / 127.5 - 1.0, mapping.expand(n, 4)


def unletterbox(points: Tensor, mapping: Tensor) -> Tensor:
    """Normalised detector-input points (..., 2) to normalised frame points."""
    sx, sy, ox, oy = mapping.tolist()
    return torch.stack([(points[..., 0] - ox) * sx, (points[..., 1] - oy) * sy], dim=-1)


@dataclass
class Rois:
    """Rotated square regions in frame pixels: centres (K, 2), sides (K,), rotations (K,) radians."""

    centres: Tensor
    sides: Tensor
    rotations: Tensor


def roi_from_points(box: Tensor, start: Tensor, end: Tensor, width: int, height: int) -> Rois:
    """mediapipe's ROI: the box's centre, turned so ``start`` → ``end`` is level, 1.5× on the long side.

    ``box`` (K, 4) normalised xmin, ymin, xmax, ymax; ``start``/``end`` (K, 2) normalised points.
    """
    scale = torch.tensor([width, height], dtype=box.dtype, device=box.device)
    vec = (end - start) * scale
    rotation = _normalize(-torch.atan2(-vec[:, 1], vec[:, 0]))
    centre = (box[:, :2] + box[:, 2:]) / 2 * scale
    size = (box[:, 2:] - box[:, :2]) * scale
    return Rois(centre, size.max(dim=1).values * ROI_SCALE, rotation)


def _normalize(angle: Tensor) -> Tensor:
    return angle - 2 * math.pi * torch.floor((angle + math.pi) / (2 * math.pi))


def roi_from_landmarks(points: Tensor, width: int, height: int) -> Rois:
    """The next frame's ROI from this frame's landmarks (K, 468, ≥2) in frame pixels."""
    xy = points[..., :2]
    scale = torch.tensor([width, height], dtype=xy.dtype, device=xy.device)
    norm = xy / scale
    box = torch.cat([norm.min(dim=1).values, norm.max(dim=1).values], dim=1)
    return roi_from_points(box, norm[:, EYE_CORNERS[0]], norm[:, EYE_CORNERS[1]], width, height)


def roi_matrices(rois: Rois, size: int = MESH_SIZE) -> Tensor:
    """(K, 2, 3) affine maps from output pixels (0..size, the rectangle's corners to the output's
    corners, mediapipe's convention) to frame pixels (centres at integers)."""
    cos, sin = torch.cos(rois.rotations), torch.sin(rois.rotations)
    s = rois.sides / size
    # output (u, v) -> frame: centre + R · ((u, v) - size/2) · side/size
    a = torch.stack([cos * s, -sin * s, sin * s, cos * s], dim=-1).reshape(-1, 2, 2)
    half = torch.full((2, 1), size / 2, dtype=a.dtype, device=a.device)
    offset = rois.centres - (a @ half)[..., 0]
    return torch.cat([a, offset[..., None]], dim=-1)


def warp_squares(
    frames: Tensor,
    frame_index: Tensor,
    matrices: Tensor,
    size: int = MESH_SIZE,
    border: str = "border",
) -> Tensor:
    """Cut every square of a batch with one ``grid_sample``: frames (F, C, H, W) float, ``frame_index``
    (K,) which frame each square is in, ``matrices`` (K, 2, 3) from ``roi_matrices``; → (K, C, size, size).

    mediapipe samples output pixel (u, v) at the matrix's image of (u, v) itself (OpenCV's
    ``warpPerspective``), frame pixel centres at integers; ``border``: ``border`` replicates the
    edge (the mesh), ``zeros`` is black (the detector).
    """
    _, _, h, w = frames.shape
    steps = torch.arange(size, dtype=matrices.dtype, device=matrices.device)
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(1, -1, 3)
    xy = uv1 @ matrices.transpose(1, 2)  # (K, size·size, 2) frame pixels
    # grid_sample(align_corners=True): -1 and +1 are the centres of the first and last pixels
    norm = torch.stack([xy[..., 0] / (w - 1), xy[..., 1] / (h - 1)], dim=-1) * 2 - 1
    return F.grid_sample(
        frames[frame_index],
        norm.reshape(-1, size, size, 2),
        mode="bilinear",
        padding_mode=border,
        align_corners=True,
    )


def project_landmarks(raw: Tensor, matrices: Tensor, sides: Tensor) -> Tensor:
    """Mesh output (K, 1404) in crop pixels to frame pixels (K, 468, 3); z scaled like x."""
    points = raw.reshape(-1, MESH_POINTS, 3)
    uv1 = torch.cat([points[..., :2], torch.ones_like(points[..., :1])], dim=-1)
    xy = uv1 @ matrices.transpose(1, 2)
    z = points[..., 2:3] * (sides / MESH_SIZE)[:, None, None]
    return torch.cat([xy, z], dim=-1)


class FaceNetworks(torch.nn.Module):
    """A detector (short or full range, told apart by its input side) and the mesh together, on
    one device, in one precision."""

    def __init__(self, detector: TFLiteNet, mesh: TFLiteNet) -> None:
        super().__init__()
        self.detector, self.mesh = detector, mesh
        self.detector_spec = detector_spec(detector)
        self.register_buffer("anchors", ssd_anchors(self.detector_spec), persistent=False)

    def detect(self, frames: Tensor, min_score: float = MIN_SCORE) -> list[Detections]:
        """Faces in each frame (N, 3, H, W) in [0, 255], normalised to the frame."""
        size = self.detector_spec.size
        inputs, mapping = letterbox(frames, size)
        regressors, logits = self.detector(inputs.to(self.dtype))
        boxes, keypoints, scores = decode_detections(
            regressors.float(), logits.float(), self.anchors.float(), size
        )
        found = []
        for i in range(len(frames)):
            d = weighted_nms(boxes[i], keypoints[i], scores[i], min_score)
            corners = unletterbox(d.boxes.reshape(-1, 2, 2), mapping[i]).reshape(-1, 4)
            found.append(Detections(corners, unletterbox(d.keypoints, mapping[i]), d.scores))
        return found

    def landmarks(self, frames: Tensor, frame_index: Tensor, rois: Rois) -> tuple[Tensor, Tensor]:
        """Landmarks (K, 468, 3) in frame pixels and face presence (K,) in [0, 1] for each ROI."""
        matrices = roi_matrices(rois)
        crops = warp_squares(frames.float() / 255.0, frame_index, matrices)
        raw, flag = self.mesh(crops.to(self.dtype))
        points = project_landmarks(raw.float().reshape(len(crops), -1), matrices, rois.sides)
        return points, torch.sigmoid(flag.float().reshape(-1))

    @property
    def dtype(self) -> torch.dtype:
        """The networks' precision (fp32 as converted; fp16 or bf16 after ``.to(dtype)``); the
        crops, the decoding and the landmarks stay fp32."""
        return next(self.mesh.parameters()).dtype


def detector_spec(net: TFLiteNet) -> DetectorSpec:
    """Which of mediapipe's detectors ``net`` is: its square input's side names it, and its
    outputs must have one row per anchor of that detector."""
    _, h, w, _ = net.spec.shapes[net.spec.inputs[0]]
    spec = DETECTORS.get(h) if h == w else None
    if spec is None:
        raise ModelError(f"expected a face detector with a 128 or 192 square input, got {h}x{w}.")
    anchors = len(ssd_anchors(spec))
    rows = [net.spec.shapes[o][1] for o in net.spec.outputs]
    if rows != [anchors, anchors]:
        raise ModelError(f"expected the {spec.name} detector's {anchors} boxes, got {rows}.")
    return spec
