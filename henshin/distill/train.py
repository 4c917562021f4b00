"""The student's training: random crops of the pairs, AdamW with a cosine schedule, seeded, resumable.

Loss = L1 + 0.5·(1 − MS-SSIM) + 0.5·gradient L1 + 0.5·consistency (``henshin.distill.losses``).
The schedule runs over the steps asked for (``--steps``) or over the training share of
the wall-clock budget (``--minutes``), so a run stopped by its budget still ends with a
small learning rate. Every ``CHECKPOINT_S`` seconds, and when stopped (Ctrl-C, SIGTERM),
the model, the optimiser, the step, the time spent and the random state are written to
``train.pt`` in the work folder; the same command resumes from there (also after SIGKILL).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from henshin.distill.config import DistillConfig, digest
from henshin.distill.losses import consistency, gradient_l1, ms_ssim, psnr, random_similarity, ssim
from henshin.distill.pairs import PairSet
from henshin.errors import OptionError
from henshin.models.checkpoints import load_checkpoint
from henshin.nets.student import SIZES, Student
from henshin.outputs import write_atomic

CHECKPOINT_S = 30.0
EVAL_S = 30.0
WARMUP_STEPS = 50
WEIGHTS = {"l1": 1.0, "ms_ssim": 0.5, "gradient": 0.5, "consistency": 0.5}
EVAL_PAIRS = 48  # held-out pairs the figures use at most
EVAL_DURING = 12  # of them, for the figure the progress bar shows while training


@dataclass
class Trained:
    """The result: the student, its step count, time spent training, and the held-out figures."""

    model: Student
    steps: int
    seconds: float
    psnr: float
    ssim: float
    held_out: bool


class Batches:
    """Random training batches from the pairs' shards (memory-mapped), cut to ``patch`` at random places."""

    def __init__(self, pairs: PairSet, patch: int, batch: int, device: str) -> None:
        self.shards = pairs.train
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        self.patch, self.batch, self.device = patch, batch, device

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y): (B, 3, patch, patch) float32 in [0, 1] each."""
        index = torch.randint(len(self), (self.batch,), generator=generator).tolist()
        size = self.shards[0].shape[2]
        corners = torch.randint(
            size - self.patch + 1, (self.batch, 2), generator=generator
        ).tolist()
        items = []
        for i, (top, left) in zip(index, corners, strict=True):
            k = int(np.searchsorted(self.offsets, i, side="right") - 1)
            items.append(
                self.shards[k][
                    i - self.offsets[k], :, top : top + self.patch, left : left + self.patch
                ]
            )
        pair = (
            torch.from_numpy(np.stack(items))
            .to(self.device)
            .permute(1, 0, 4, 2, 3)
            .float()
            .div_(255.0)
        )
        return pair[0], pair[1]


def evaluation_pairs(pairs: PairSet) -> tuple[np.ndarray, bool]:
    """The pairs the figures come from: the held-out ones, or (none held out) the first training ones."""
    held = pairs.stack("held")
    if len(held):
        return held[:EVAL_PAIRS], True
    return pairs.stack("train")[:EVAL_PAIRS], False


@torch.no_grad()
def evaluate(model: Student, pairs: np.ndarray, device: str) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM of the student against the teacher on full-size crops."""
    model.eval()
    scores, similar = [], []
    for start in range(0, len(pairs), 8):
        chunk = torch.from_numpy(np.ascontiguousarray(pairs[start : start + 8])).to(device)
        chunk = chunk.permute(1, 0, 4, 2, 3).float().div_(255.0)
        out = model(chunk[0]).clamp(0, 1)
        out = torch.round(out * 255) / 255  # what the filter delivers: 8-bit pixels
        scores.append(psnr(out, chunk[1]))
        similar.append(ssim(out, chunk[1]))
    model.train()
    return float(torch.cat(scores).mean()), float(torch.cat(similar).mean())


class Trainer:
    """One training run over cached pairs, resumable from the work folder."""

    def __init__(
        self,
        config: DistillConfig,
        pairs: PairSet,
        folder: Path,
        seconds: float | None,
        progress: Callable[..., Any] | None = None,
        on_checkpoint: Callable[[], None] = lambda: None,
    ) -> None:
        self.config, self.pairs, self.folder = config, pairs, folder
        self.seconds = seconds  # training time allowed now (None: run config.steps)
        self.progress, self.on_checkpoint = progress, on_checkpoint
        self.device = config.device
        self.key = digest([config.pairs_key(), config.train_key()])
        torch.manual_seed(config.seed)
        self.model = Student(SIZES[config.student]).to(self.device)
        self.optimiser = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=1e-4, betas=(0.9, 0.99)
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step, self.spent, self.total_s = 0, 0.0, seconds
        self._resume()
        self.resumed_from = self.step  # 0: a fresh start

    # -- checkpoints -----------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "train.pt"

    def _resume(self) -> None:
        if not self.checkpoint_path.is_file():
            return
        state = load_checkpoint(self.checkpoint_path)
        if state.get("key") != self.key:
            raise OptionError(
                f"{self.checkpoint_path} was made by another distill run; give another --work-dir, "
                "or --overwrite to start again."
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimiser.load_state_dict(state["optimiser"])
        self.generator.set_state(state["generator"])
        self.step, self.spent = int(state["step"]), float(state["seconds"])
        if state.get("total_s") is not None:
            self.total_s = float(state["total_s"])

    def save(self) -> None:
        """Write the training state atomically (the model, optimiser, step, time, random state)."""
        buffer = io.BytesIO()
        torch.save(
            {
                "key": self.key,
                "model": self.model.state_dict(),
                "optimiser": self.optimiser.state_dict(),
                "generator": self.generator.get_state(),
                "step": self.step,
                "seconds": self.spent,
                "total_s": self.total_s,
            },
            buffer,
        )
        write_atomic(self.checkpoint_path, buffer.getvalue(), "the distill training checkpoint")
        self.on_checkpoint()

    # -- the loop --------------------------------------------------------------------------------

    def progress_fraction(self) -> float:
        """How far along the schedule is, 0..1."""
        if self.config.steps is not None:
            return min(self.step / self.config.steps, 1.0)
        return min(self.spent / max(self.total_s or 1.0, 1e-6), 1.0)

    def learning_rate(self) -> float:
        """Linear warm-up, then cosine to zero over the run."""
        warm = min(1.0, (self.step + 1) / WARMUP_STEPS)
        return self.config.lr * warm * 0.5 * (1.0 + math.cos(math.pi * self.progress_fraction()))

    def finished(self) -> bool:
        if self.config.steps is not None:
            return self.step >= self.config.steps
        return self.spent >= (self.total_s or 0.0)

    def run(self) -> Trained:
        """Train until the steps or the time are spent; a stop (Ctrl-C, SIGTERM) saves and re-raises."""
        batches = Batches(self.pairs, self.config.train_patch, self.config.batch, self.device)
        held, is_held = evaluation_pairs(self.pairs)
        self.model.train()
        bar = self._bar()
        score = float("nan")
        last_save = last_eval = time.monotonic()
        try:
            while not self.finished():
                started = time.monotonic()
                loss = self._step(batches)
                self.step += 1
                if started - last_eval > EVAL_S and len(held):
                    score, _ = evaluate(self.model, held[:EVAL_DURING], self.device)
                    last_eval = time.monotonic()
                if started - last_save > CHECKPOINT_S:
                    self.save()
                    last_save = time.monotonic()
                self.spent += (
                    time.monotonic() - started
                )  # the figures and checkpoints count against the budget too
                if bar is not None:
                    bar.n = (
                        self.step
                        if self.config.steps is not None
                        else min(int(self.spent), bar.total or 0)
                    )
                    bar.set_postfix(
                        step=self.step, loss=f"{loss:.4f}", held_psnr=f"{score:.2f}", refresh=False
                    )
                    bar.refresh()
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
        self.save()
        value, similar = (
            evaluate(self.model, held, self.device) if len(held) else (float("nan"), float("nan"))
        )
        return Trained(self.model, self.step, self.spent, value, similar, is_held)

    def _step(self, batches: Batches) -> float:
        x, y = batches.draw(self.generator)
        for group in self.optimiser.param_groups:
            group["lr"] = self.learning_rate()
        out = self.model(x)
        loss = WEIGHTS["l1"] * (out - y).abs().mean()
        loss = loss + WEIGHTS["ms_ssim"] * (1.0 - ms_ssim(out.clamp(0, 1), y)).mean()
        loss = loss + WEIGHTS["gradient"] * gradient_l1(out, y)
        quarter = max(
            1, len(x) // 4
        )  # the consistency term on a quarter of the batch: a second pass costs
        theta = random_similarity(quarter, self.generator, device=self.device)
        loss = loss + WEIGHTS["consistency"] * consistency(
            self.model, x[:quarter], out[:quarter], theta
        )
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        return float(loss.detach())

    def _bar(self) -> Any:
        if self.progress is None:
            return None
        if self.config.steps is not None:
            return self.progress(
                total=self.config.steps, initial=self.step, desc="train", unit="step"
            )
        return self.progress(
            total=int(self.total_s or 0), initial=int(self.spent), desc="train", unit="s"
        )
