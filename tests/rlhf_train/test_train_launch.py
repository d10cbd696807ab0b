"""A stage on two processes launched from Python (rlhf.train.launch, torch's elastic launcher
on gloo): the same training as one process, with rank 0's progress reports in the caller and
the caller's stop landing at the step it was asked at."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.testing import assert_close

from rlhf.train import RewardConfig, train_reward_model
from rlhf.train.launch import launch


def config(tiny_checkpoint: Path, tiny_comparisons: Path, out: Path) -> RewardConfig:
    return RewardConfig(
        data=tiny_comparisons,
        policy=tiny_checkpoint,
        out=out,
        batch_size=8,
        micro_batch_size=2,
        lr=1e-3,
        train_layers=2,
        checkpoint_every=2,
    )


def test_two_launched_processes_train_as_one_and_report_here(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    one = train_reward_model(config(tiny_checkpoint, tiny_comparisons, tmp_path / "one"))
    reports: list[tuple[int, int, str]] = []

    def progress(step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        reports.append((step, total, metrics.phase))
        return False

    two = launch(
        train_reward_model,
        config(tiny_checkpoint, tiny_comparisons, tmp_path / "two"),
        progress,
        processes=2,
    )
    steps = one["steps"]
    assert two["steps"] == steps > 3
    assert [r for r in reports if r[2] == "train"] == [
        (i, steps, "train") for i in range(1, steps + 1)
    ]
    history = json.loads((tmp_path / "two" / "metrics.json").read_text())["history"]
    assert_close(
        torch.tensor([h["loss"] for h in history]),
        torch.tensor([h["loss"] for h in one["history"]]),
    )


def test_a_stop_asked_by_the_caller_lands_at_that_step(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    def stop_at_2(step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        return metrics.phase == "train" and step == 2

    out = tmp_path / "stopped"
    result = launch(
        train_reward_model, config(tiny_checkpoint, tiny_comparisons, out), stop_at_2, processes=2
    )
    assert result["stopped"]
    assert torch.load(out / "resume.pt", weights_only=True)["step"] == 2
