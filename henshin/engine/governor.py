"""The live latency governor: quality traded for time when frames run over the budget.

A ladder of levels, built for the running filter graph, each one step cheaper
than the last, in the order a viewer notices least: fully convolutional
networks get smaller crops (a 256 side → 192 → 160: softer detail, same face),
the detector looks for new faces four times less often (a newcomer is found a
little later), a face that barely moved keeps its previous result (a still
face stays still), then each filter's own steps (the latent filter encodes
less often, then renders smaller). The governor reads the tail of the
capture→result latencies of the last ``HOLD_FRAMES`` frames run at the current
level (their 90th percentile, ``TAIL``), since a viewer sees the late frames, not
the average: when it is over the budget it steps down, below ``ROOM`` × the
budget it climbs back, at most once per ``HOLD_FRAMES`` frames, so that each
step shows its effect first; a level whose last few frames are mostly over the
budget (their median) is left at once. A level left soon after the governor
climbed back to it is tried again only after twice as long as the last time (up
to ``MAX_BACKOFF`` times the hold): every try of a level that does not fit makes
late frames, and on a steady scene it would be tried every other hold. A run
starts at the first crop whose network, timed in the warm-up, leaves the rest of
the budget to everything else (``NETWORK_SHARE``), so a slow machine's first
frames are not late. With those timings a step down goes as far as it must: to
the first level where the late figure, less what the networks save there for
the frame's faces, fits (a second face comes: a smaller crop, or faces in turn,
at once), rather than one level at a time, each making late frames while it is
measured. And a frame with more faces than its level was fitted to (the start
fits one; a step, the faces of the frame that called for it) is judged again
before its faces are cut, by the start's rule for that many faces: two faces
from the first frame run at a crop their two networks fit, not at one face's
for the frames a measured step needs. At level 0 nothing is changed.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from henshin.errors import OptionError

HOLD_FRAMES = 15  # frames between two steps: one step's effect is measured before the next
ROOM = 0.6  # climb back once the tail is under this share of the budget
# The tail: this share of the last ``hold_frames`` frames (all at the current level) must be
# within the budget. A mean hid the late frames: two faces at 720p averaged 73 ms with the
# governor content while one frame in a hundred took over 150 ms.
TAIL = 0.9
# A level whose frames are mostly late is left sooner: once the median of the last ``hold_frames // 3``
# frames (at least 3) is over the budget. Leaving late is what a viewer sees; climbing stays slow.
QUICK_SHARE = 3
# A climb back to a level that is left within ``FAILED_WITHIN`` holds doubles the wait before the next
# try, up to this many holds; a level that lasts longer than that is tried again after one hold.
MAX_BACKOFF = 8
FAILED_WITHIN = 4
# The governor starts at the first crop whose network, timed alone in the warm-up, takes at most this share
# of the budget: the rest goes to the frame's wait for work (up to a camera period), tracking, compositing
# and the cores the capture thread shares. Measured (AMD EPYC, two cores, default filter, one face): a
# network of 28 ms alone (crop 192) made frames of 72 ms at the median and 90 at the 90th percentile;
# one of 48 ms (256) made 93 and 105, over a 100 ms budget. Timed as the median of three runs (not one
# run after the warm-up's largest batch, which read 42-47 ms at 256 px on a slower EPYC where the
# median reads 40), 40 ms at 256 px ran 65-71 ms at the median and 93 at the 95th percentile: at the
# edge of the budget, and slower than the crop below by 10-15 ms for a sharper face.
NETWORK_SHARE = 0.35
CROP_SIDES = (192, 160)  # a 256 crop's governed sides; other sizes scale alike
DETECT_SLOWER = 4  # the detector's cadence divided by this
# A face whose landmarks moved on average less than this share of its width keeps its result: about
# the mesh's own jitter on a still face (measured: 1 % on a 50-px face); the paste follows the face anyway.
HOLD_MOTION = 0.02


def crop_side(size: int, scale: float) -> int:
    """The side a free-size crop of ``size`` is cut at when governed to ``scale`` (a multiple of 4)."""
    return size if scale == 1 else max(4 * round(size * scale / 4), 4)


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: what the engine does differently from full quality.

    crop_scale: free-size crops are cut at this share of their side; detect_every:
    the tracker's look for new faces runs this many times less often; hold: a
    face whose landmarks moved on average less than this share of its width since
    its last result keeps that result (0: never); in_turn: of two or more faces, the half whose
    results are oldest are run each frame and the others keep their last result (pasted where the
    face is now, as a held one); filter_step: the step asked of each
    filter's own ladder (``Filter.set_quality``).
    """

    name: str
    crop_scale: float = 1.0
    detect_every: int = 1
    hold: float = 0.0
    in_turn: bool = False
    filter_step: int = 0


FULL = Level("full")


def ladder(free_size: int | None, faces: bool, filter_steps: int) -> list[Level]:
    """The levels for a graph: ``free_size``, the crop side of its fully convolutional face links
    (None: none); ``faces``: whether it tracks faces; ``filter_steps``: its filters' own steps."""
    levels = [FULL]
    if free_size:
        for side in CROP_SIDES:
            levels.append(
                replace(
                    levels[-1], name=f"crop {round(free_size * side / 256)}", crop_scale=side / 256
                )
            )
    if faces:
        levels.append(replace(levels[-1], name="detector /4", detect_every=DETECT_SLOWER))
        levels.append(replace(levels[-1], name="hold still faces", hold=HOLD_MOTION))
        levels.append(replace(levels[-1], name="faces in turn", in_turn=True))
    for step in range(1, filter_steps + 1):
        levels.append(replace(levels[-1], name=f"filter step {step}", filter_step=step))
    return levels


def check_budget(ms: float) -> float:
    """The ``--latency-budget`` value, refused in one sentence when it is not a positive time (0 turns it off)."""
    if not ms >= 0:
        raise OptionError(
            f"--latency-budget expects milliseconds above 0 (0 turns the governor off), got {ms:g}."
        )
    return ms


class Governor:
    """Chooses the level of each frame from the latency of the frames before it."""

    def __init__(
        self, budget_ms: float, levels: list[Level], hold_frames: int = HOLD_FRAMES
    ) -> None:
        self.budget_ms = budget_ms
        self.levels = levels
        self.hold_frames = hold_frames
        self.index = 0
        self.frames: dict[str, int] = {}  # frames processed at each level, by name
        self._recent: deque[float] = deque(maxlen=hold_frames)  # the last latencies at this level
        self._since = 0
        self._climbed = False  # whether the current level was reached by climbing back to it
        self._backoff: dict[int, int] = {}  # level index → holds to wait before climbing back to it
        self._network_ms: dict[float, float] = {}  # crop scale → one face's networks, timed in the warm-up
        self._fitted = 1  # the faces the current level was chosen for

    @property
    def level(self) -> Level:
        """The level the next frame runs at."""
        return self.levels[self.index]

    def start(self, network_ms: dict[float, float]) -> bool:
        """Start at the first level whose crop lets a face's networks take at most ``NETWORK_SHARE`` of the
        budget, by ``network_ms`` (crop scale → ms of one face, timed in the warm-up; a scale not timed
        fits), or at the smallest crop when none does; True when that is not level 0."""
        if self.budget_ms <= 0 or not network_ms:
            return False
        self._network_ms = dict(network_ms)
        crops = [i for i, level in enumerate(self.levels)
                 if i == 0 or level.crop_scale != self.levels[i - 1].crop_scale]
        fits = [i for i in crops if self.network_of(i, 1) <= NETWORK_SHARE * self.budget_ms]
        self.index = fits[0] if fits else crops[-1]
        self._since, self._climbed, self._fitted = 0, False, 1
        self._recent.clear()
        return self.index > 0

    def faces_found(self, faces: int) -> bool:
        """The next frame has ``faces`` faces (told before they are cut); True when its level changes.

        More faces than the level was chosen for, with the warm-up's timing: where their networks take more
        than ``NETWORK_SHARE`` of the budget here, to the first level below where they do not (or the one of
        least network time), as the start does for one face. Fewer faces change nothing: the tail says
        when there is room to climb.
        """
        if faces <= self._fitted or self.budget_ms <= 0 or not self._network_ms:
            return False
        self._fitted = faces
        share = NETWORK_SHARE * self.budget_ms
        if self.network_of(self.index, faces) <= share or self.index == len(self.levels) - 1:
            return False
        target = self._below(faces, lambda i: self.network_of(i, faces) <= share)
        if self.network_of(target, faces) >= self.network_of(self.index, faces):
            return False  # nothing below saves network time (a filter's own steps are not timed)
        return self._step(target - self.index, faces)

    def network_of(self, index: int, faces: int) -> float:
        """The ms a frame's networks take at level ``index`` for ``faces`` faces, by the warm-up's timing
        (0 where it timed none): one face's at the level's crop, for each face the level runs."""
        level = self.levels[index]
        runs = math.ceil(faces / 2) if level.in_turn and faces > 1 else faces
        return self._network_ms.get(level.crop_scale, 0.0) * runs

    def relevel(self, levels: list[Level]) -> None:
        """A new ladder (the graph changed): keep the level's depth where the new ladder has it."""
        self.levels = levels
        self.index = min(self.index, len(levels) - 1)
        self._backoff.clear()  # the new ladder's levels are new: each is tried again after one hold
        self._network_ms = {}  # the warm-up timed the old graph's networks: steps are one level again

    def observe(self, latency_ms: float, faces: int = 1) -> bool:
        """One frame ran at ``level``, took ``latency_ms`` and had ``faces`` faces; True when the next frame's
        level differs."""
        self.frames[self.level.name] = self.frames.get(self.level.name, 0) + 1
        if self.budget_ms <= 0:
            return False
        self._recent.append(latency_ms)
        self._since += 1
        quick = max(3, self.hold_frames // QUICK_SHARE)
        if self._since < self.hold_frames:
            last = sorted(list(self._recent)[-quick:])
            late = self._since >= quick and last[len(last) // 2] > self.budget_ms
            return self._down(last[len(last) // 2], faces) if late and self.index < len(self.levels) - 1 else False
        tail = self.tail()
        if tail > self.budget_ms and self.index < len(self.levels) - 1:
            return self._down(tail, faces)
        wait = self.hold_frames * self._backoff.get(self.index - 1, 1)
        if tail < ROOM * self.budget_ms and self.index > 0 and self._since >= wait:
            return self._step(-1, faces)
        return False

    def tail(self) -> float:
        """The ``TAIL`` quantile of the recent latencies at this level (0 before any)."""
        if not self._recent:
            return 0.0
        ordered = sorted(self._recent)
        return ordered[max(math.ceil(TAIL * len(ordered)) - 1, 0)]

    def _down(self, late_ms: float, faces: int) -> bool:
        """Step down from a level whose frames took ``late_ms`` (the figure over the budget) with ``faces``
        faces: to the first level below where that, less the networks' saving there (``network_of``),
        is within the budget, or the one of least network time when none is; one level where nothing
        was timed."""
        here = self.network_of(self.index, faces)
        target = self._below(faces, lambda i: late_ms - here + self.network_of(i, faces) <= self.budget_ms)
        return self._step(target - self.index, faces)

    def _below(self, faces: int, fits: Callable[[int], bool]) -> int:
        """The first level below this one that ``fits``, or the one of least network time for ``faces``
        (the earliest of equals) when none does; there must be a level below."""
        below = range(self.index + 1, len(self.levels))
        first = next((i for i in below if fits(i)), None)
        return first if first is not None else min(below, key=lambda i: (self.network_of(i, faces), i))

    def _step(self, direction: int, faces: int) -> bool:
        if direction > 0 and self._climbed:  # leaving a level the governor had climbed back to
            failed = self._since < FAILED_WITHIN * self.hold_frames
            self._backoff[self.index] = min(2 * self._backoff.get(self.index, 1), MAX_BACKOFF) if failed else 1
        self._climbed = direction < 0
        self.index += direction
        self._since, self._fitted = 0, faces
        self._recent.clear()  # the next decision judges the new level alone
        return True
