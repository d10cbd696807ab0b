"""The loop's services without a worker: the weekly rollover, publishing and rolling back, and
the reaper that finds iterations whose worker is gone. Time is passed in, never slept."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Batch
from rlhf import services
from rlhf.models import Iteration, ModelVersion, PublicationEvent
from rlhf.pipeline import TRAINING
from tandem.celery import app
from tandem.leases import reconcile


def open_batch() -> Batch:
    return Batch.objects.get(status=Batch.Status.OPEN)


def test_the_weekly_rollover_closes_the_week_opens_the_next_and_starts_once(loop, settings):
    settings.LOOP_ALGORITHM = "dpo"
    iteration = services.weekly_rollover()
    loop.current.refresh_from_db()
    assert loop.current.status == Batch.Status.CLOSED
    assert open_batch().model_a == loop.base
    assert iteration.algorithm == "dpo" and iteration.created_by is None
    assert iteration.batches == [loop.closed.name, loop.current.name]
    assert iteration.idempotency_key == f"rollover:{loop.current.name}"
    # Beat firing twice for one week starts nothing more.
    assert Iteration.objects.count() == 1


def test_a_week_without_labels_opens_the_next_batch_and_trains_nothing(
    transactional_db, tiny_version
):
    Batch.objects.create(name="quiet", model_a=tiny_version, model_b=tiny_version)
    assert services.weekly_rollover() is None
    assert open_batch().name != "quiet"
    assert not Iteration.objects.exists()


def ready_policy(loop, name: str) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name,
        kind=ModelVersion.Kind.POLICY,
        status=ModelVersion.Status.READY,
        artifact_path=loop.base.artifact_path,
        sha256=loop.base.sha256,
        parent=loop.base,
    )


def test_publish_switches_the_batch_and_roll_back_switches_it_back(loop):
    new = ready_policy(loop, "v2")
    services.publish_version(version=new, actor=loop.researcher)
    after_publish = open_batch()
    assert (after_publish.model_a, after_publish.model_b) == (new, loop.base)
    with pytest.raises(services.LoopConflict, match="only a ready policy"):
        services.publish_version(version=new, actor=loop.researcher)

    serving_again = services.rollback_version(
        version=new, actor=loop.researcher, reason="worse on safety"
    )
    assert serving_again == loop.base
    new.refresh_from_db()
    assert new.status == ModelVersion.Status.RETIRED
    after_rollback = open_batch()
    assert after_rollback != after_publish
    assert (after_rollback.model_a, after_rollback.model_b) == (loop.base, loop.base)
    actions = [
        (e.action, e.version.name, e.reason) for e in PublicationEvent.objects.order_by("id")
    ]
    assert actions == [("publish", "v2", ""), ("rollback", "v2", "worse on safety")]
    with pytest.raises(services.LoopConflict, match="no earlier published policy"):
        services.rollback_version(version=loop.base, actor=loop.researcher)


def test_only_the_newest_published_policy_rolls_back(loop):
    new = ready_policy(loop, "v2")
    services.publish_version(version=new, actor=None)
    with pytest.raises(services.LoopConflict, match="not the newest"):
        services.rollback_version(version=loop.base, actor=None)


def test_a_reward_model_does_not_publish(loop):
    rm = ready_policy(loop, "rm")
    rm.kind = ModelVersion.Kind.REWARD_HELPFULNESS
    rm.save()
    with pytest.raises(services.LoopError, match="not a policy"):
        services.publish_version(version=rm, actor=None)


def requeued(**kwargs) -> list[int]:
    return reconcile(TRAINING, **kwargs).requeued


def started(loop) -> Iteration:
    return services.start_iteration(actor=loop.researcher, algorithm="dpo").iteration


def test_a_stale_heartbeat_is_requeued_and_a_fresh_one_is_not(loop, settings):
    iteration = started(loop)
    beat = timezone.now()
    # A live lease held elsewhere (another host): judged by its heartbeat alone.
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running", worker="elsewhere:1:abc", heartbeat_at=beat
    )
    assert requeued(now=beat + timedelta(seconds=5)) == []
    later = beat + timedelta(seconds=settings.ITERATION_STALE_SECONDS + 1)
    assert requeued(now=later) == [iteration.pk]
    # Released by the reconciler: the next worker's claim finds it free.
    iteration.refresh_from_db()
    assert iteration.worker == "" and iteration.status == "running"


def test_a_lease_of_a_dead_process_on_this_host_is_free_at_once(loop):
    iteration = started(loop)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = f"{socket.gethostname()}:{gone.stdout.strip()}:abc"
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running", worker=dead, heartbeat_at=timezone.now()
    )
    assert requeued() == [iteration.pk]
    alive = f"{socket.gethostname()}:{os.getpid()}:abc"
    Iteration.objects.filter(pk=iteration.pk).update(worker=alive)
    assert requeued() == []


def test_a_queued_iteration_is_requeued_only_once_its_message_may_be_lost(loop, settings):
    iteration = started(loop)  # its message is never sent: the test's transaction never commits
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge("train")
    assert requeued() == []  # too young: its message may still be on the way
    later = iteration.created_at + timedelta(seconds=settings.ITERATION_STALE_SECONDS + 1)
    with app.connection_for_write() as broker:  # a message waits: this row may be its
        broker.SimpleQueue("train").put({"waiting": True})
        assert requeued(now=later) == []
        broker.default_channel.queue_purge("train")
    assert requeued(now=later) == [iteration.pk]
    # Stamped when sent: not sent again until another stale period has passed.
    assert requeued(now=later + timedelta(seconds=1)) == []


def test_an_iteration_whose_workers_keep_dying_fails_visibly(loop, settings):
    iteration = started(loop)
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running",
        worker="elsewhere:1:abc",
        heartbeat_at=timezone.now() - timedelta(days=1),
        attempts=settings.ITERATION_MAX_ATTEMPTS,
    )
    outcome = reconcile(TRAINING)
    assert outcome.requeued == [] and outcome.failed == [iteration.pk]
    iteration.refresh_from_db()
    assert iteration.status == "failed" and iteration.worker == ""
    assert f"gave up after {settings.ITERATION_MAX_ATTEMPTS} attempts" in iteration.error


def test_cancelling_a_queued_iteration_cancels_it_at_once(loop):
    iteration = services.cancel_iteration(iteration=started(loop))
    assert iteration.status == Iteration.Status.CANCELLED and iteration.finished_at
    with pytest.raises(services.LoopConflict, match="already cancelled"):
        services.cancel_iteration(iteration=iteration)


@pytest.mark.parametrize(
    ("request_", "field", "message"),
    [
        ({"algorithm": "sgd"}, "algorithm", "unknown algorithm 'sgd'"),
        ({"algorithm": "dpo", "batches": ["nope"]}, "batches", "unknown batch: nope"),
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": "warm"}}},
            "hyperparameters.dpo.beta",
            "expected a number",
        ),
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"policy": "/etc"}}},
            "hyperparameters.dpo.policy",
            "set by the pipeline",
        ),
        (
            {"algorithm": "dpo", "hyperparameters": {"sft": {}}},
            "hyperparameters.sft",
            "unknown stage",
        ),
        (
            {"algorithm": "dpo", "hyperparameters": {"ppo": {"stepz": 3}}},
            "hyperparameters.ppo.stepz",
            "did you mean 'steps'",
        ),
        ({"algorithm": "dpo", "batches": ["2026-w48"]}, "batches", "no training labels"),
    ],
)
def test_a_bad_start_names_the_field(loop, request_, field, message):
    with pytest.raises(services.LoopError, match=message) as raised:
        services.start_iteration(actor=loop.researcher, **request_)
    assert raised.value.field == field
    assert not Iteration.objects.exists()


def test_batches_without_held_out_labels_are_refused_before_training(loop):
    from annotation.models import Comparison

    Comparison.objects.filter(batch=loop.closed).update(heldout=False)
    with pytest.raises(services.LoopError, match="no held-out labels") as raised:
        services.start_iteration(actor=loop.researcher, algorithm="dpo")
    assert raised.value.field == "batches"


def test_the_files_of_a_queued_or_succeeded_iteration_stay(loop):
    iteration = started(loop)
    with pytest.raises(services.LoopConflict, match="only a cancelled or failed"):
        services.remove_iteration_files(iteration=iteration)
    Iteration.objects.filter(pk=iteration.pk).update(status="succeeded")
    with pytest.raises(services.LoopConflict, match="is succeeded"):
        services.remove_iteration_files(iteration=iteration)


def test_two_switches_at_once_leave_one_open_batch(loop):
    """A publish and beat's rollover meet at a barrier and switch the batch at once: the lock
    on the open batch lets one switch first and the other after it, each opening a batch of
    its own. (A real race on PostgreSQL, in the second pass; SQLite queues the writers.)"""
    import threading

    from django.db import connection

    new = ready_policy(loop, "v2")
    barrier = threading.Barrier(2)
    errors = []

    def run(action) -> None:
        try:
            barrier.wait()
            action()
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    actions = [
        lambda: services.publish_version(version=new, actor=None),
        services.weekly_rollover,
    ]
    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert Batch.objects.filter(status=Batch.Status.OPEN).count() == 1
    assert Batch.objects.count() == 4  # the two weeks, then one batch per switch


def test_an_id_that_comes_back_gets_a_directory_of_its_own(settings):
    """After a database reset beside the same artifacts root, iteration 1 is a new iteration:
    it must not find (and skip as done) the old one's finished runs."""
    from datetime import UTC, datetime

    first = Iteration(pk=1, created_at=datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    again = Iteration(pk=1, created_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    assert first.directory != again.directory
    assert first.directory.parent == settings.ARTIFACTS_ROOT / "iterations"
    assert first.directory.name.startswith("1-20261123-")
