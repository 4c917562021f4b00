"""``henshin distill``: pairs from the teacher, the student trained, the model stored; resumable throughout."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from henshin.distill.config import (
    PAIRS_SHARE,
    DistillConfig,
    open_work_folder,
    read_json,
    write_json,
)
from henshin.distill.export import export_student
from henshin.distill.pairs import PairMaker
from henshin.distill.teacher import build_teacher
from henshin.distill.train import Trainer
from henshin.errors import BadInputError

log = logging.getLogger("henshin")

EXPORT_RESERVE_S = 15.0  # of a --minutes budget, kept for the export and the final figures


class Clock:
    """Wall-clock time spent on this run, across resumes (kept in the work folder's run.json)."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "run.json"
        self.before = float(read_json(self.file).get("elapsed_s", 0.0))
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return self.before + time.monotonic() - self.started

    def save(self) -> None:
        doc = read_json(self.file)
        doc["elapsed_s"] = round(self.elapsed(), 2)
        write_json(self.file, doc)


def distill(
    config: DistillConfig,
    runtime: Any = None,
    say: Callable[[str], None] = print,
    progress: Callable[..., Any] | None = None,
) -> Path:
    """Run a distillation (or resume one from its work folder); returns the stored student's folder."""
    folder = open_work_folder(config)
    clock = Clock(folder)
    budget = config.budget_s
    teacher = build_teacher(config.chain, config.params, runtime, folder, say)
    try:
        pairs_s = None if budget is None else max(budget * PAIRS_SHARE - clock.elapsed(), 0.0)
        try:
            pairs = PairMaker(config, teacher, folder, pairs_s, progress).run()
        finally:
            clock.save()
        if pairs.train_count == 0:
            raise BadInputError(
                f"no face was found in {', '.join(map(str, config.sources))}; distill needs videos "
                "or pictures with faces in them."
            )
        say(f"pairs: {pairs.train_count} for training, {pairs.held_count} held out")
        train_s = None if budget is None else max(budget - clock.elapsed() - EXPORT_RESERVE_S, 1.0)
        trainer = Trainer(config, pairs, folder, train_s, progress, on_checkpoint=clock.save)
        if trainer.resumed_from:
            say(f"training resumes at step {trainer.resumed_from} from {trainer.checkpoint_path}")
        trained = trainer.run()
        clock.save()
        figures = "held-out" if trained.held_out else "training (no frame was held out)"
        say(
            f"student: {trained.steps} steps in {trained.seconds:.0f} s; {figures} PSNR "
            f"{_fmt(trained.psnr)} dB, SSIM {_fmt(trained.ssim, 3)} against the teacher"
        )
        return export_student(config, teacher, trained, pairs.train_count, say)
    finally:
        teacher.close()


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
