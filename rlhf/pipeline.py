"""Running an iteration: its steps in order, each recorded, each safe to run again.

    export -> reward_helpfulness -> reward_safety -> policy stage(s) -> evaluate -> publish

The database is the truth a worker resumes from, not the broker (tandem.leases). The training
task is acknowledged when a worker takes it; the worker then holds the iteration's lease (its
`worker` and `heartbeat_at`, renewed by a heartbeat thread) while it works. A worker that dies,
SIGKILL included, leaves a lease that goes stale (no heartbeat for ITERATION_STALE_SECONDS) or
names a process that no longer exists on this host; the reconciler (beat, and every train
worker's start) enqueues such an iteration again, and the next worker takes the lease over:

- a step that succeeded is skipped (its row says so, with its metrics);
- the step that was running starts again on the same run directory, so a training stage
  continues from its resume.pt, and a stage whose outputs are complete is not run again;
- publishing happens once: the new policy's version has a name derived from the iteration and
  a version already published is left as it is.

Cancellation is the status CANCELLING on the row, read by the stages' progress callback at
every step (a stage then stops at its next step) and before every step. Errors mark the step
and the iteration failed, with the traceback; the run directories stay for inspection and the
serving models are untouched, since only the publish step changes what serves.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import F
from django.utils import timezone

from annotation.export import training_records
from rlhf import hyperparameters, services
from rlhf.models import Iteration, IterationStep, ModelVersion
from rlhf.train import (
    evaluate_policy,
    faults,
    run_dpo,
    run_ppo,
    run_rejection_sampling,
    train_reward_model,
)
from rlhf.train.data import write_jsonl
from rlhf.train.launch import launch
from tandem.leases import Lease, LeasedWork

log = logging.getLogger(__name__)

RM_KINDS = {
    "reward_helpfulness": ModelVersion.Kind.REWARD_HELPFULNESS,
    "reward_safety": ModelVersion.Kind.REWARD_SAFETY,
}


class Interrupted(Exception):
    """The iteration is being cancelled, or this worker lost its lease: stop working on it."""


# --- the lease ----------------------------------------------------------------------------------


def _give_up(rows, message: str) -> int:
    now = timezone.now()
    IterationStep.objects.filter(iteration__in=rows, status=IterationStep.Status.RUNNING).update(
        status=IterationStep.Status.FAILED, error=message, finished_at=now
    )
    return rows.update(worker="", status=Iteration.Status.FAILED, error=message, finished_at=now)


def _send(iteration_id: int) -> None:
    from rlhf.tasks import train_iteration  # the task module imports this one

    train_iteration.delay(iteration_id)


# Iterations as leased work (tandem.leases): a worker holds one while it trains; the
# reconciler hands one whose worker died to the next.
TRAINING = LeasedWork(
    name="iteration",
    queue="train",
    model=Iteration,
    active=Iteration.ACTIVE,
    on_claim={Iteration.Status.QUEUED: Iteration.Status.RUNNING},
    on_release={},
    heartbeat_setting="ITERATION_HEARTBEAT_SECONDS",
    stale_setting="ITERATION_STALE_SECONDS",
    max_attempts_setting="ITERATION_MAX_ATTEMPTS",
    send=_send,
    give_up=_give_up,
    claim_fields=lambda row, now: {"started_at": row.started_at or now},
)


# --- running an iteration -----------------------------------------------------------------------


def run_iteration(iteration_id: int) -> str:
    """Work on an iteration until it is done, cancelled or failed, or until its lease is lost.
    Returns what happened (for the task's log). A call for an iteration another live worker
    holds, or one already finished, does nothing."""
    close_old_connections()
    lease = Lease(TRAINING, iteration_id)
    if not lease.claim():
        return "not claimed"
    iteration = Iteration.objects.get(pk=iteration_id)
    lease.start_heartbeat()
    with iteration_log(iteration):
        log.info("iteration %s: attempt %s by %s", iteration.pk, iteration.attempts, lease.worker)
        try:
            for step in iteration.steps.order_by("index"):
                if step.status == IterationStep.Status.SUCCEEDED:
                    continue
                check_not_stopped(iteration, lease)
                run_step(iteration, step, lease)
        except Interrupted:
            if lease.lost.is_set():
                log.warning("iteration %s: lease lost to another worker", iteration.pk)
                lease.release()
                return "lease lost"
            log.info("iteration %s: cancelled", iteration.pk)
            IterationStep.objects.filter(
                iteration=iteration, status=IterationStep.Status.RUNNING
            ).update(status=IterationStep.Status.CANCELLED, finished_at=timezone.now())
            lease.release(status=Iteration.Status.CANCELLED, finished_at=timezone.now())
            return "cancelled"
        except Exception as error:
            log.exception("iteration %s failed", iteration.pk)
            message = f"{type(error).__name__}: {error}"
            IterationStep.objects.filter(
                iteration=iteration, status=IterationStep.Status.RUNNING
            ).update(status=IterationStep.Status.FAILED, error=message, finished_at=timezone.now())
            lease.release(
                status=Iteration.Status.FAILED,
                error=message,
                traceback=traceback.format_exc(),
                finished_at=timezone.now(),
            )
            return "failed"
        log.info("iteration %s: succeeded", iteration.pk)
        lease.release(
            status=Iteration.Status.SUCCEEDED,
            current_step="",
            metrics=summary_metrics(iteration),
            finished_at=timezone.now(),
        )
        return "succeeded"


def check_not_stopped(iteration: Iteration, lease: Lease) -> None:
    status = Iteration.objects.filter(pk=iteration.pk).values_list("status", flat=True).first()
    if lease.lost.is_set() or status not in (Iteration.Status.RUNNING, Iteration.Status.QUEUED):
        raise Interrupted


def run_step(iteration: Iteration, step: IterationStep, lease: Lease) -> None:
    out = iteration.directory / step.name
    out.mkdir(parents=True, exist_ok=True)
    now = timezone.now()
    IterationStep.objects.filter(pk=step.pk).update(
        status=IterationStep.Status.RUNNING,
        attempts=F("attempts") + 1,
        output_dir=str(out.relative_to(settings.ARTIFACTS_ROOT)),
        started_at=step.started_at or now,
        error="",
    )
    Iteration.objects.filter(pk=iteration.pk).update(current_step=step.name, progress={})
    log.info(
        "iteration %s: step %s starts (device=%s, processes=%s)",
        iteration.pk,
        step.name,
        iteration.device,
        settings.TRAIN_PROCESSES,
    )
    started = time.monotonic()
    try:
        metrics = STEPS[step.name](Context(iteration, out, ProgressReport(iteration, lease)))
    finally:
        # Each attempt adds its time, a failed one too; a killed one's is lost with its process.
        IterationStep.objects.filter(pk=step.pk).update(
            seconds=F("seconds") + (time.monotonic() - started)
        )
    close_old_connections()
    IterationStep.objects.filter(pk=step.pk).update(
        status=IterationStep.Status.SUCCEEDED, metrics=metrics, finished_at=timezone.now()
    )
    log.info(
        "iteration %s: step %s done in %.1f s", iteration.pk, step.name, time.monotonic() - started
    )
    faults.reached(f"pipeline:{step.name}")


@contextmanager
def iteration_log(iteration: Iteration) -> Iterator[None]:
    """The iteration's log file (the API shows its tail): this module's records and the
    training stages' while the iteration runs in this process."""
    iteration.directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(iteration.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("rlhf")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


class ProgressReport:
    """The stages' progress callback: writes the step's progress to the iteration row (at most
    once a second, and at the end of each phase) and asks the stage to stop when the iteration
    is being cancelled or this worker lost its lease. The status is read at every call, so a
    cancel takes effect within one training step or one sampling chunk."""

    INTERVAL = 1.0

    def __init__(self, iteration: Iteration, lease: Lease) -> None:
        self.iteration_id = iteration.pk
        self.lease = lease
        self.phase: str | None = None
        self.phase_start = (0, 0.0)  # (step, time) where this phase's rate is measured from
        self.last_write = 0.0

    def __call__(self, step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        close_old_connections()
        now = time.monotonic()
        phase = getattr(metrics, "phase", "train")  # rlhf.train.PhaseMetrics
        if phase != self.phase:
            self.phase, self.phase_start = phase, (step - 1, now)
        if now - self.last_write >= self.INTERVAL or step >= total:
            self._write(step, total, loss, now)
        status = (
            Iteration.objects.filter(pk=self.iteration_id).values_list("status", flat=True).first()
        )
        return self.lease.lost.is_set() or status != Iteration.Status.RUNNING

    def _write(self, step: int, total: int, loss: float, now: float) -> None:
        first, started = self.phase_start
        rate = (step - first) / (now - started) if now > started else 0.0
        progress = {
            "phase": self.phase,
            "step": step,
            "total": total,
            "loss": loss if math.isfinite(loss) else None,  # NaN while sampling: not JSON
            "eta_seconds": round((total - step) / rate, 1) if rate else None,
            "updated_at": timezone.now().isoformat(),
        }
        Iteration.objects.filter(pk=self.iteration_id).update(progress=progress)
        self.last_write = now
        log.info("%s %s/%s loss %s", self.phase, step, total, progress["loss"])


# --- the steps ----------------------------------------------------------------------------------


@dataclass
class Context:
    iteration: Iteration
    out: Path
    progress: ProgressReport

    def config(self, stage: str, **pipeline: Any) -> Any:
        return hyperparameters.stage_config(
            stage,
            self.iteration.device,
            self.iteration.hyperparameters,
            out=self.out,
            **pipeline,
        )

    def output_of(self, step: str) -> Path:
        return self.iteration.directory / step

    @property
    def comparisons(self) -> Path:
        return self.output_of("export") / "comparisons.jsonl"

    def reward_model(self, step: str) -> Path:
        return self.output_of(step) / "model"

    @property
    def policy(self) -> Path:
        """The iteration's new policy: what its last policy stage wrote."""
        return self.output_of(Iteration.POLICY_STEPS[self.iteration.algorithm][-1]) / "model"


def completed(out: Path, name: str = "metrics.json") -> dict[str, Any] | None:
    """A stage's metrics if its run directory holds a finished run (the metrics file is
    written last), so a step killed after its stage finished is not trained again."""
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def run_stage(
    context: Context, function: Callable, config: Any, done_file: str = "metrics.json"
) -> dict[str, Any]:
    metrics = completed(context.out, done_file)
    if metrics is None:
        metrics = launch(function, config, context.progress, processes=settings.TRAIN_PROCESSES)
    if metrics.get("stopped"):
        raise Interrupted
    return {k: v for k, v in metrics.items() if k not in ("config", "history", "samples")}


def export_step(context: Context) -> dict[str, Any]:
    rows = list(training_records(context.iteration.batches))
    heldout = sum(row["heldout"] for row in rows)
    if heldout == len(rows):
        raise ValueError("the batches have no training labels (every label is held out)")
    write_jsonl(context.comparisons, rows)
    per_batch: dict[str, int] = {}
    for row in rows:
        per_batch[row["batch"]] = per_batch.get(row["batch"], 0) + 1
    return {
        "rows": len(rows),
        "train_rows": len(rows) - heldout,
        "heldout_rows": heldout,
        "rows_per_batch": per_batch,
    }


def reward_step(target: str) -> Callable[[Context], dict[str, Any]]:
    step = f"reward_{target}"

    def train(context: Context) -> dict[str, Any]:
        config = context.config(
            "reward",
            data=context.comparisons,
            # Each reward model starts from the policy the iteration improves (Llama 2).
            policy=context.iteration.parent.directory,
            target=target,
        )
        metrics = run_stage(context, train_reward_model, config)
        register_version(
            context.iteration,
            step,
            kind=RM_KINDS[step],
            directory=context.out / "model",
            metrics=metrics.get("heldout", {}),
        )
        return metrics

    return train


def rejection_step(context: Context) -> dict[str, Any]:
    config = context.config(
        "rejection_sampling",
        data=context.comparisons,
        policy=context.iteration.parent.directory,
        helpfulness_rm=context.reward_model("reward_helpfulness"),
        safety_rm=context.reward_model("reward_safety"),
        # Llama 2 keeps the best samples of every earlier iteration in the pool.
        previous_best=earlier_best_samples(context.iteration),
    )
    return run_stage(context, run_rejection_sampling, config)


def ppo_step(context: Context) -> dict[str, Any]:
    config = context.config(
        "ppo",
        data=context.comparisons,
        policy=policy_before(context, "ppo"),
        helpfulness_rm=context.reward_model("reward_helpfulness"),
        safety_rm=context.reward_model("reward_safety"),
    )
    return run_stage(context, run_ppo, config)


def dpo_step(context: Context) -> dict[str, Any]:
    config = context.config(
        "dpo", data=context.comparisons, policy=context.iteration.parent.directory
    )
    return run_stage(context, run_dpo, config)


def evaluate_step(context: Context) -> dict[str, Any]:
    config = context.config(
        "evaluate",
        data=context.comparisons,
        policy=context.policy,
        baseline=context.iteration.parent.directory,
        helpfulness_rm=context.reward_model("reward_helpfulness"),
        safety_rm=context.reward_model("reward_safety"),
    )
    return run_stage(context, evaluate_policy, config, done_file="eval.json")


def publish_step(context: Context) -> dict[str, Any]:
    iteration = context.iteration
    evaluation = IterationStep.objects.get(iteration=iteration, name="evaluate").metrics
    version = register_version(
        iteration,
        "policy",
        kind=ModelVersion.Kind.POLICY,
        directory=context.policy,
        metrics={"evaluation": evaluation},
    )
    if iteration.auto_publish and version.status != ModelVersion.Status.PUBLISHED:
        services.publish_version(version=version, actor=iteration.created_by)
    version.refresh_from_db()
    return {"version": version.name, "status": version.status}


STEPS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "export": export_step,
    "reward_helpfulness": reward_step("helpfulness"),
    "reward_safety": reward_step("safety"),
    "rejection_sampling": rejection_step,
    "ppo": ppo_step,
    "dpo": dpo_step,
    "evaluate": evaluate_step,
    "publish": publish_step,
}


def policy_before(context: Context, stage: str) -> Path:
    """The policy a stage starts from: the previous policy stage's output, else the parent."""
    stages = Iteration.POLICY_STEPS[context.iteration.algorithm]
    index = stages.index(stage)
    return (
        context.output_of(stages[index - 1]) / "model"
        if index
        else context.iteration.parent.directory
    )


def earlier_best_samples(iteration: Iteration) -> list[Path]:
    steps = IterationStep.objects.filter(
        name="rejection_sampling",
        status=IterationStep.Status.SUCCEEDED,
        iteration__pk__lt=iteration.pk,
    ).order_by("iteration_id")
    return [path for step in steps if (path := step.directory / "best.jsonl").exists()]


def version_name(iteration: Iteration, what: str) -> str:
    return f"iteration-{iteration.pk}-{what.replace('_', '-')}"


def register_version(
    iteration: Iteration, what: str, *, kind: str, directory: Path, metrics: dict[str, Any]
) -> ModelVersion:
    """The model a step trained as a READY version (once: a step run again finds it)."""
    version, created = ModelVersion.objects.get_or_create(
        name=version_name(iteration, what),
        defaults={
            "kind": kind,
            "artifact_path": str(directory.relative_to(settings.ARTIFACTS_ROOT)),
            "parent": iteration.parent,
            "iteration": iteration,
            "trained_on": iteration.batches,
            "metrics": metrics,
            "source": f"iteration {iteration.pk}",
        },
    )
    if created or version.status == ModelVersion.Status.IMPORTING:
        version = services.register_checkpoint(version)
    return version


def summary_metrics(iteration: Iteration) -> dict[str, Any]:
    """What the iteration's row shows: per step the headline figures."""
    steps = {s.name: s.metrics for s in iteration.steps.all()}
    summary: dict[str, Any] = {
        "seconds": {s.name: round(s.seconds, 1) for s in iteration.steps.all()}
    }
    for name in Iteration.REWARD_STEPS:
        heldout = steps.get(name, {}).get("heldout", {})
        summary[name] = {
            "accuracy": heldout.get("accuracy"),
            "accuracy_by_strength": heldout.get("accuracy_by_strength"),
        }
    evaluation = steps.get("evaluate", {})
    summary["evaluate"] = {
        key: evaluation.get(key)
        for key in ("win_rate", "mean_reward_policy", "mean_reward_baseline", "kl_to_baseline")
    }
    summary["published"] = steps.get("publish", {}).get("version")
    return summary
