"""A run's per-step scalars (loss, lr and whatever each step's metrics hold) as TensorBoard event
files in out/tensorboard/, flushed after every step so that `tensorboard --logdir runs/` shows a
run as it trains. Tags are the names of metrics.json's history keys."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path


class TensorBoardLog:
    """Written by rank 0 only (the other ranks' metrics are the same global means)."""

    def __init__(self, directory: Path, steps: Sequence[dict[str, float]]) -> None:
        """Start the log again from `steps`, the history a resumed run restored. The killed run
        may have logged steps that the resumed one redoes; TensorBoard's purge_step would hide
        those only if the event files' names sorted in the order they were written, and a name
        holds the time in whole seconds. Written again, the log is one file with every step
        once, in order."""
        from torch.utils.tensorboard import SummaryWriter  # imports TensorBoard: only here

        shutil.rmtree(directory, ignore_errors=True)
        self.writer = SummaryWriter(log_dir=str(directory))
        for record in steps:
            self.add(record)

    def add(self, record: dict[str, float]) -> None:
        """One step's record: {"step": n, "loss": ..., **metrics}."""
        step = int(record["step"])
        for name, value in record.items():
            if name != "step":
                self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
