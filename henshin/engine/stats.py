"""What a run did and how long each stage took: one record for offline and live runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAGES = ("decode", "track", "align", "filter", "composite", "encode")


@dataclass
class RunStats:
    """Counters and stage timings; the live fields stay empty offline.

    ``stage_s`` holds seconds summed over the run per stage (decode, track,
    align, filter, composite, encode; live adds output). Live: frames captured,
    processed (the rest were dropped before any work), repeated to hold the
    camera's rate, and the capture→sink latency of every processed frame;
    ``levels``: frames processed at each of the latency governor's levels, by name.
    ``cuts``: the indices of the frames that started a new shot; ``warping_error``:
    the temporal stability of output and input, when it was measured.
    """

    mode: str = "offline"
    frames_in: int = 0
    frames_out: int = 0
    frames_with_faces: int = 0
    faces: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_repeated: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    warping_error: dict[str, Any] | None = None  # output and input, where the filter changed pixels
    wall_s: float = 0.0
    end_reason: str = ""
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    levels: dict[str, int] = field(default_factory=dict)
    latency_budget_ms: float = 0.0

    def count(self, faces: int, cut_at: int | None = None) -> None:
        """One frame processed, with ``faces`` faces in it; ``cut_at``: its index when it starts a new shot."""
        self.frames_processed += 1
        self.faces += faces
        self.frames_with_faces += bool(faces)
        if cut_at is not None:
            self.cuts.append(cut_at)

    def to_json(self) -> dict[str, Any]:
        """The ``--stats`` document."""
        per = max(self.frames_processed, 1)
        stage_ms = {k: round(v / per * 1000, 3) for k, v in self.stage_s.items()}
        doc: dict[str, Any] = {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_with_faces": self.frames_with_faces,
            "faces": self.faces,
            "shots": len(self.cuts) + 1 if self.frames_processed else 0,
            "cuts": list(self.cuts),
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.frames_processed / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "stage_ms": stage_ms,
        }
        if self.warping_error is not None:
            doc["warping_error"] = self.warping_error
        if self.end_reason:
            doc["end_reason"] = self.end_reason
        if self.mode == "live":
            if "output" in self.stage_s:
                stage_ms["output"] = round(self.stage_s["output"] / max(self.frames_out, 1) * 1000, 3)
            doc |= {
                "frames_captured": self.frames_in,
                "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped,
                "frames_repeated": self.frames_repeated,
                "latency_ms": percentiles(self.latencies_ms),
                "latency_budget_ms": self.latency_budget_ms,
                "frames_per_level": dict(self.levels),
                "fps_processed": doc["fps"],
                "fps_out": round(self.frames_out / self.wall_s, 3) if self.wall_s > 0 else 0.0,
                "end_reason": self.end_reason,
            }
        return doc


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in ms, rounded; every field None when there are no samples (not a misleading 0)."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)}
