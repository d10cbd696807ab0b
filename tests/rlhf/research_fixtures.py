"""Iterations with data for the figures' tests: steps marked finished with the ORM, their run
directories under ARTIFACTS_ROOT holding the metrics files the stages write (history
included), and labels that compare two versions (the ratings' games)."""

from __future__ import annotations

import json
import shutil
from typing import Any

from django.conf import settings

from rlhf.models import Iteration, IterationStep, ModelVersion

HELPFULNESS_HELDOUT = {
    "accuracy": 0.75,
    "accuracy_by_strength": {
        "better": {"accuracy": 0.5, "pairs": 2},
        "significantly_better": {"accuracy": 1.0, "pairs": 2},
    },
    "accuracy_by_batch": {"2026-w47": {"accuracy": 0.75, "pairs": 4}},
    "accuracy_by_guideline": {"helpfulness": {"accuracy": 0.75, "pairs": 4}},
}
SAFETY_HELDOUT = {
    "accuracy": 0.5,
    "accuracy_by_strength": {"significantly_better": {"accuracy": 0.5, "pairs": 2}},
    "accuracy_by_batch": {"2026-w47": {"accuracy": 0.5, "pairs": 2}},
}
PPO_HISTORY = [
    {"step": 1, "loss": 0.9, "reward": 0.40, "kl": 0.00},
    {"step": 2, "loss": 0.8, "reward": 0.45, "kl": 0.10, "heldout_reward": 0.42},
    {"step": 3, "loss": 0.7, "reward": 0.52, "kl": 0.25},
    {"step": 4, "loss": 0.6, "reward": 0.55, "kl": 0.30, "heldout_reward": 0.50},
]
REWARD_VS_K = [
    {"k": 1, "max": 0.40, "median": 0.40},
    {"k": 2, "max": 0.55, "median": 0.45},
    {"k": 4, "max": 0.70, "median": 0.44},
]
SFT_HISTORY = [{"step": 1, "loss": 2.0, "lr": 1e-5}, {"step": 2, "loss": 1.5, "lr": 1e-5}]
DPO_HISTORY = [
    {"step": 1, "loss": 0.70, "dpo_loss": 0.69, "reward_accuracy": 0.5},
    {"step": 2, "loss": 0.60, "dpo_loss": 0.60, "reward_accuracy": 0.75},
]
EVALUATION = {
    "win_rate": 0.75,
    "mean_reward_policy": 0.6,
    "mean_reward_baseline": 0.4,
    "mean_helpfulness_policy": 0.62,
    "mean_helpfulness_baseline": 0.41,
    "mean_safety_policy": 0.71,
    "mean_safety_baseline": 0.55,
    "kl_to_baseline": 1.5,
}


def new_iteration(parent: ModelVersion, algorithm: str, **fields: Any) -> Iteration:
    """A queued iteration with its pending steps and an empty run directory (ids come round
    again on SQLite: an earlier test's files must not be this one's)."""
    iteration = Iteration.objects.create(
        batches=["2026-w47"], algorithm=algorithm, parent=parent, **fields
    )
    IterationStep.objects.bulk_create(
        IterationStep(iteration=iteration, index=index, name=name)
        for index, name in enumerate(Iteration.step_names(algorithm))
    )
    shutil.rmtree(iteration.directory, ignore_errors=True)
    return iteration


def finish_step(iteration: Iteration, name: str, metrics: dict[str, Any]) -> IterationStep:
    """Mark the step succeeded as the pipeline does: its run's full metrics in the run
    directory's metrics.json, the row's metrics without the history."""
    out = iteration.directory / name
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics))
    step = iteration.steps.get(name=name)
    step.status = IterationStep.Status.SUCCEEDED
    step.output_dir = str(out.relative_to(settings.ARTIFACTS_ROOT))
    step.metrics = {k: v for k, v in metrics.items() if k not in ("history", "config")}
    step.save()
    return step


def rejection_ppo_iteration(parent: ModelVersion, **fields: Any) -> Iteration:
    """Rejection sampling then PPO, finished up to PPO (evaluation and publishing pending)."""
    iteration = new_iteration(parent, "rejection_sampling+ppo", **fields)
    finish_step(iteration, "export", {"rows": 8})
    finish_step(iteration, "reward_helpfulness", {"heldout": HELPFULNESS_HELDOUT, "history": []})
    finish_step(iteration, "reward_safety", {"heldout": SAFETY_HELDOUT, "history": []})
    finish_step(
        iteration,
        "rejection_sampling",
        {"reward_vs_k": REWARD_VS_K, "sft": {"history": SFT_HISTORY, "steps": 2}},
    )
    finish_step(iteration, "ppo", {"steps_run": 4, "history": PPO_HISTORY})
    Iteration.objects.filter(pk=iteration.pk).update(
        status=Iteration.Status.RUNNING,
        current_step="evaluate",
        progress={"step": 3, "total": 8, "phase": "sample"},
    )
    iteration.refresh_from_db()
    return iteration


def evaluated_policy(name: str, parent: ModelVersion, iteration: Iteration | None = None):
    return ModelVersion.objects.create(
        name=name,
        artifact_path=parent.artifact_path,
        sha256=parent.sha256,
        status=ModelVersion.Status.READY,
        parent=parent,
        iteration=iteration,
        metrics={"evaluation": EVALUATION},
    )


def serve_two_versions(batch, winner: ModelVersion, loser: ModelVersion) -> int:
    """Make every labelled comparison of `batch` a game: the chosen side's response by
    `winner`, the other by `loser`. Returns how many games that is."""
    from annotation.models import Label, Response

    labels = Label.objects.filter(comparison__batch=batch)
    for label in labels:
        for response in Response.objects.filter(comparison=label.comparison):
            response.model_version = winner if response.side == label.chosen else loser
            response.save(update_fields=["model_version"])
    return labels.count()
