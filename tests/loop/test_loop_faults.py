"""An iteration survives its worker: killed (SIGKILL, by the process itself at a chosen step, so
the test lands at the same point on any machine), it resumes in a new worker and publishes
exactly one version; cancelled mid-stage, it stops within one step; failing, it is marked
failed and nothing that serves changes. Starting twice with one idempotency key starts one."""

from __future__ import annotations

import json
import signal
import threading

import pytest
import torch
from django.db import connection
from loop_fixtures import FAST, finished, pause_dir, wait_for

from annotation.models import Batch
from rlhf import services
from rlhf.models import Iteration, IterationStep, ModelVersion, PublicationEvent
from rlhf.train import faults


def steps_of(iteration) -> dict[str, IterationStep]:
    return {s.name: s for s in iteration.steps.all()}


def serving(loop) -> tuple:
    batch = Batch.objects.get(status=Batch.Status.OPEN)
    return batch.name, batch.model_a_id, batch.model_b_id


@pytest.mark.parametrize(
    ("algorithm", "kill_at", "killed_step"),
    [
        # Inside the helpfulness RM's training, after step 3 (step 2's resume.pt on disk).
        ("rejection_sampling", "reward_helpfulness:3", "reward_helpfulness"),
        # Inside the policy stage: rejection sampling's fine-tuning, after its step 3.
        ("rejection_sampling", "rejection_sampling:3", "rejection_sampling"),
    ],
)
def test_a_killed_worker_is_resumed_by_the_next_and_publishes_once(
    loop, train_workers, algorithm, kill_at, killed_step
):
    iteration = services.start_iteration(
        actor=loop.researcher, algorithm=algorithm, hyperparameters=FAST
    ).iteration
    first = train_workers(**{faults.KILL: kill_at})
    wait_for(lambda: first.process.poll() is not None, first)
    assert first.process.returncode == -signal.SIGKILL, first.log()[-4000:]

    iteration.refresh_from_db()
    assert iteration.status == Iteration.Status.RUNNING and iteration.current_step == killed_step
    before = steps_of(iteration)
    resume = torch.load(before[killed_step].directory / "resume.pt", weights_only=True)
    assert resume["step"] == 2
    assert not ModelVersion.objects.filter(iteration=iteration, kind="policy").exists()

    # A new worker finds the lease of a process that is gone and takes the iteration over.
    second = train_workers()
    wait_for(finished(iteration), second)
    assert iteration.status == Iteration.Status.SUCCEEDED, iteration.traceback
    assert iteration.attempts == 2
    after = steps_of(iteration)
    for name, step in after.items():
        assert step.status == IterationStep.Status.SUCCEEDED
        done_before = before[name].status == IterationStep.Status.SUCCEEDED
        # Finished steps are not redone; the killed one ran twice; later ones once.
        assert step.attempts == (2 if name == killed_step else 1), name
        if done_before:
            assert step.finished_at == before[name].finished_at, name
    # The killed stage carried on from its resume.pt: its history holds every step once.
    metrics = json.loads((after[killed_step].directory / "metrics.json").read_text())
    history = metrics["history"] if "history" in metrics else metrics["sft"]["history"]
    assert [h["step"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) > 3
    assert ModelVersion.objects.filter(iteration=iteration, kind="policy").count() == 1
    assert PublicationEvent.objects.filter(action="publish").count() == 1
    assert "attempt 2 by" in iteration.log_path.read_text()


def test_cancel_mid_stage_stops_within_one_step(loop, train_workers, tmp_path):
    iteration = services.start_iteration(
        actor=loop.researcher, algorithm="dpo", hyperparameters=FAST
    ).iteration
    pauses = pause_dir(tmp_path)
    before = serving(loop)
    worker = train_workers(**{faults.PAUSE: "reward_helpfulness:1", faults.PAUSE_DIR: str(pauses)})
    wait_for((pauses / "reward_helpfulness-1.reached").exists, worker)
    iteration.refresh_from_db()
    assert iteration.current_step == "reward_helpfulness"
    progress = iteration.progress
    assert (progress["phase"], progress["step"]) == ("train", 1) and progress["total"] > 2
    assert progress["loss"] > 0 and "eta_seconds" in progress  # None until a rate is known
    services.cancel_iteration(iteration=iteration)
    (pauses / "reward_helpfulness-1.release").touch()
    wait_for(finished(iteration), worker)

    assert iteration.status == Iteration.Status.CANCELLED
    step = steps_of(iteration)["reward_helpfulness"]
    assert step.status == IterationStep.Status.CANCELLED
    # The flag was set after step 1; the stage saw it at step 2 and stopped there.
    resume = torch.load(step.directory / "resume.pt", weights_only=True)
    assert resume["step"] == 2
    assert steps_of(iteration)["reward_safety"].status == IterationStep.Status.PENDING
    assert not ModelVersion.objects.filter(iteration=iteration).exists()
    assert serving(loop) == before
    assert worker.process.poll() is None  # the worker lives on

    # Its files are kept until asked for, then removed.
    assert services.remove_iteration_files(iteration=iteration) > 0
    assert not iteration.directory.exists()


def test_a_failing_step_fails_the_iteration_and_leaves_serving_alone(loop, train_workers):
    iteration = services.start_iteration(
        actor=loop.researcher, algorithm="dpo", hyperparameters=FAST
    ).iteration
    before = serving(loop)
    worker = train_workers(**{faults.FAIL: "reward_safety:1"})
    wait_for(finished(iteration), worker)

    assert iteration.status == Iteration.Status.FAILED
    assert "InjectedFault: failure injected at reward_safety:1" in iteration.error
    assert "Traceback" in iteration.traceback
    steps = steps_of(iteration)
    assert steps["reward_helpfulness"].status == IterationStep.Status.SUCCEEDED
    assert steps["reward_safety"].status == IterationStep.Status.FAILED
    assert "InjectedFault" in steps["reward_safety"].error
    assert steps["dpo"].status == IterationStep.Status.PENDING
    # Logs and partial outputs stay for inspection.
    assert steps["reward_safety"].directory.is_dir()
    assert "InjectedFault" in iteration.log_path.read_text()
    assert serving(loop) == before
    assert not PublicationEvent.objects.exists()

    services.remove_iteration_files(iteration=iteration)
    assert not iteration.directory.exists()
    [rm] = ModelVersion.objects.filter(iteration=iteration)  # the helpfulness RM it made
    assert rm.status == ModelVersion.Status.RETIRED


def test_one_idempotency_key_starts_one_iteration(loop):
    first = services.start_iteration(
        actor=loop.researcher, algorithm="dpo", idempotency_key="week-47"
    )
    again = services.start_iteration(
        actor=loop.researcher, algorithm="dpo", idempotency_key="week-47"
    )
    assert first.created and not again.created
    assert again.iteration.pk == first.iteration.pk
    with pytest.raises(services.LoopConflict, match="different request"):
        services.start_iteration(actor=loop.researcher, algorithm="ppo", idempotency_key="week-47")
    assert Iteration.objects.count() == 1


def test_concurrent_starts_with_one_key_start_one_iteration(loop):
    """Threads meet at a barrier and insert at once: the unique key lets one in and the other
    gets the same iteration back. (On SQLite writes queue up, so this is a real race only on
    PostgreSQL, where the second pass runs it.)"""
    barrier = threading.Barrier(4)
    results, errors = [], []

    def start() -> None:
        try:
            barrier.wait()
            results.append(
                services.start_iteration(
                    actor=loop.researcher, algorithm="dpo", idempotency_key="same"
                )
            )
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len({r.iteration.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Iteration.objects.count() == 1
