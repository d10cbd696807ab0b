"""Progress reports and stop requests outside the training steps: the sampling of rejection
sampling and evaluation, and PPO's held-out evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from rlhf.train import (
    EvalConfig,
    PPOConfig,
    RejectionConfig,
    evaluate_policy,
    run_ppo,
    run_rejection_sampling,
)
from rlhf.train.cli import main
from rlhf.train.runs import HELDOUT, SAMPLE, TRAIN

Call = tuple[str, int, int, float, dict[str, float]]  # phase, step, total, loss, metrics


class Reports:
    """A progress callback that records every report and asks to stop when `stop(calls)`."""

    def __init__(self, stop: Callable[[list[Call]], bool] = lambda calls: False) -> None:
        self.stop = stop
        self.calls: list[Call] = []

    def __call__(self, step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        self.calls.append((metrics.phase, step, total, loss, dict(metrics)))  # type: ignore[attr-defined]
        return self.stop(self.calls)

    def of(self, phase: str) -> list[Call]:
        return [c for c in self.calls if c[0] == phase]


def at(phase: str, step: int) -> Callable[[list[Call]], bool]:
    return lambda calls: calls[-1][:2] == (phase, step)


@pytest.fixture
def rejection(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path
) -> Callable[[Path], RejectionConfig]:
    def config(out: Path) -> RejectionConfig:
        return RejectionConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            helpfulness_rm=tiny_reward_model,
            out=out,
            samples=2,
            max_new_tokens=4,
            generation_batch_size=16,
            batch_size=8,
            max_seq_len=128,
            epochs=1,
        )

    return config


def test_rejection_sampling_reports_its_chunks_then_its_steps(
    rejection: Callable[[Path], RejectionConfig], tmp_path: Path
) -> None:
    reports = Reports()
    metrics = run_rejection_sampling(rejection(tmp_path), reports)
    sampled = reports.of(SAMPLE)
    chunks = math.ceil(metrics["prompts"] * 2 / 16)
    assert [(c[1], c[2]) for c in sampled] == [(i, chunks) for i in range(1, chunks + 1)]
    assert all(math.isnan(c[3]) and c[4] == {} for c in sampled)
    assert reports.calls[: len(sampled)] == sampled  # sampling comes before training
    assert [c[1] for c in reports.of(TRAIN)] == list(range(1, metrics["sft"]["steps"] + 1))


def test_a_stop_while_rejection_sampling_ends_the_stage_and_it_samples_again(
    rejection: Callable[[Path], RejectionConfig], tmp_path: Path
) -> None:
    whole = run_rejection_sampling(rejection(tmp_path / "whole"))
    out = tmp_path / "stopped"
    reports = Reports(at(SAMPLE, 2))
    assert run_rejection_sampling(rejection(out), reports) == {
        "stopped": True,
        "phase": SAMPLE,
        "history": [],
    }
    assert len(reports.calls) == 2  # stopped after the chunk that asked
    assert not any((out / name).exists() for name in ("samples.pt", "best.jsonl", "model"))
    again = run_rejection_sampling(rejection(out))
    assert (out / "best.jsonl").read_text() == (tmp_path / "whole" / "best.jsonl").read_text()
    assert again["reward_vs_k"] == whole["reward_vs_k"]


def evaluation(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, out: Path
) -> EvalConfig:
    return EvalConfig(
        data=tiny_comparisons,
        policy=tiny_checkpoint,
        baseline=tiny_checkpoint,
        helpfulness_rm=tiny_reward_model,
        out=out,
        max_new_tokens=4,
        generation_batch_size=4,
    )


def test_a_stop_while_evaluating_ends_it_and_a_later_call_evaluates_the_same(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    def config(out: Path) -> EvalConfig:
        return evaluation(tiny_checkpoint, tiny_comparisons, tiny_reward_model, out)

    reports = Reports()
    whole = evaluate_policy(config(tmp_path / "whole"), reports)
    chunks = math.ceil(whole["prompts"] / 4)
    once = [(SAMPLE, i, chunks) for i in range(1, chunks + 1)]
    assert [c[:3] for c in reports.calls] == once + once  # the policy's answers, the baseline's

    out = tmp_path / "stopped"
    reports = Reports(lambda calls: len(calls) == chunks + 1)  # the baseline's first chunk
    assert evaluate_policy(config(out), reports)["stopped"]
    assert len(reports.calls) == chunks + 1 and not (out / "eval.json").exists()
    again = evaluate_policy(config(out))
    assert again["samples"] == whole["samples"] and again["win_rate"] == whole["win_rate"]


def test_the_command_line_draws_a_bar_per_sampling_phase(
    tiny_checkpoint: Path,
    tiny_comparisons: Path,
    tiny_reward_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = evaluation(tiny_checkpoint, tiny_comparisons, tiny_reward_model, tmp_path)
    path = tmp_path / "eval.yaml"
    path.write_text(json.dumps(config.to_json()))  # JSON is YAML too
    assert main(["eval", "--config", str(path)]) == 0
    # A bar may be redrawn at 100% more than once (how often depends on the machine's speed);
    # each closed bar ends its line with its final state.
    finals = [line.split("\r")[-1] for line in capsys.readouterr().err.split("\n")]
    assert sum(final.startswith("eval sample: 100%") for final in finals) == 2, finals


def ppo(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, out: Path
) -> PPOConfig:
    return PPOConfig(
        data=tiny_comparisons,
        policy=tiny_checkpoint,
        helpfulness_rm=tiny_reward_model,
        out=out,
        steps=3,
        batch_size=4,
        minibatch_size=4,
        micro_batch_size=2,
        max_new_tokens=4,
        generation_batch_size=4,
        lr=1e-3,
        value_lr=1e-3,
        eval_every=1,
        patience=0,
        checkpoint_every=1,
    )


def test_ppo_reports_its_heldout_evaluations_and_a_stop_before_training_keeps_nothing(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    reports = Reports(at(HELDOUT, 1))
    stopped = run_ppo(ppo(tiny_checkpoint, tiny_comparisons, tiny_reward_model, tmp_path), reports)
    assert stopped == {"stopped": True, "phase": HELDOUT, "history": []}
    assert len(reports.calls) == 1 and math.isnan(reports.calls[0][3])
    assert not (tmp_path / "heldout_initial.pt").exists()


def test_a_stop_during_ppos_heldout_evaluation_ends_the_run_after_that_step(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    def config(out: Path) -> PPOConfig:
        return ppo(tiny_checkpoint, tiny_comparisons, tiny_reward_model, out)

    whole = run_ppo(config(tmp_path / "whole"))
    # Stop at the held-out evaluation of step 2: after step 1's report.
    reports = Reports(lambda calls: calls[-1][0] == HELDOUT and len(reports.of(TRAIN)) == 1)
    stopped = run_ppo(config(tmp_path / "stopped"), reports)
    assert stopped["stopped"] and len(stopped["history"]) == 2
    assert "heldout_reward" in stopped["history"][-1]  # step 2 is complete
    assert torch.load(tmp_path / "stopped" / "resume.pt", weights_only=True)["step"] == 2
    resumed = run_ppo(config(tmp_path / "stopped"))
    for key in ("reward", "kl", "heldout_reward"):
        assert [h[key] for h in resumed["history"]] == pytest.approx(
            [h[key] for h in whole["history"]]
        ), key
