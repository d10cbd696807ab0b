"""Generation as leased work (annotation.generation on tandem.leases): a comparison whose
worker died is sent again and sampled by the next, one whose workers keep dying fails
visibly, one whose message was lost is sent again once nothing waits in its queue, and a
retry after a database error takes its own lease back without counting an attempt."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import generation, services
from annotation.models import Comparison
from tandem.celery import app
from tandem.leases import Lease, reconcile


@pytest.fixture
def comparison(batch, make_user) -> Comparison:
    # Written in the test's transaction, which never commits: no message is ever sent for it.
    return services.start_dialogue(
        author=make_user("alice"), prompt="Name a colour.", guideline="helpfulness"
    ).comparison


@pytest.fixture
def empty_generate_queue():
    """The generate queue emptied before and after (the reconciler's sends land there)."""

    def purge() -> None:
        with app.connection_for_write() as broker:
            broker.default_channel.queue_purge("generate")

    purge()
    yield
    purge()


def dead_worker() -> str:
    """The lease of a process of this host that has exited."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return f"{socket.gethostname()}:{gone.stdout.strip()}:abc"


def test_a_comparison_whose_worker_died_is_sent_again_and_sampled(comparison, empty_generate_queue):
    Comparison.objects.filter(pk=comparison.pk).update(
        status="generating", worker=dead_worker(), heartbeat_at=timezone.now(), attempts=1
    )
    assert reconcile(generation.GENERATION).requeued == [comparison.pk]
    comparison.refresh_from_db()
    assert (comparison.status, comparison.worker) == ("pending", "")
    # The next worker's run (the task's body, inline) takes it and samples both responses.
    assert generation.generate(comparison.pk) == "ready"
    comparison.refresh_from_db()
    assert (comparison.status, comparison.worker, comparison.attempts) == ("ready", "", 2)
    assert all(response.finish_reason for response in comparison.responses.all())
    # A second delivery of the same message does nothing.
    assert generation.generate(comparison.pk) == "not claimed"


def test_a_live_lease_is_left_alone_and_a_stale_one_is_released(
    comparison, settings, empty_generate_queue
):
    beat = timezone.now()
    Comparison.objects.filter(pk=comparison.pk).update(
        status="generating", worker="elsewhere:1:abc", heartbeat_at=beat, attempts=1
    )
    assert reconcile(generation.GENERATION, now=beat + timedelta(seconds=1)).requeued == []
    later = beat + timedelta(seconds=settings.GENERATION_STALE_SECONDS + 1)
    assert reconcile(generation.GENERATION, now=later).requeued == [comparison.pk]


def test_a_comparison_whose_workers_keep_dying_fails_visibly(comparison, settings):
    Comparison.objects.filter(pk=comparison.pk).update(
        status="generating", worker=dead_worker(), attempts=settings.GENERATION_MAX_ATTEMPTS
    )
    outcome = reconcile(generation.GENERATION)
    assert (outcome.requeued, outcome.failed) == ([], [comparison.pk])
    comparison.refresh_from_db()
    assert comparison.status == "failed" and comparison.worker == ""
    assert f"gave up after {settings.GENERATION_MAX_ATTEMPTS} attempts" in comparison.error


def test_a_pending_comparison_is_sent_again_only_once_its_message_may_be_lost(
    comparison, settings, empty_generate_queue
):
    assert (
        reconcile(generation.GENERATION).requeued == []
    )  # just written: its message may be on the way
    later = comparison.heartbeat_at + timedelta(seconds=settings.GENERATION_STALE_SECONDS + 1)
    with app.connection_for_write() as broker:  # a message waits: the worker is behind, not lost
        broker.SimpleQueue("generate").put({"waiting": True})
        assert reconcile(generation.GENERATION, now=later).requeued == []
        broker.default_channel.queue_purge("generate")
    assert reconcile(generation.GENERATION, now=later).requeued == [comparison.pk]
    # Stamped when sent: not sent again until another stale period has passed.
    assert reconcile(generation.GENERATION, now=later + timedelta(seconds=1)).requeued == []


def test_a_retry_takes_its_own_lease_back_without_counting_an_attempt(comparison):
    first = Lease(generation.GENERATION, comparison.pk)
    assert first.claim()
    comparison.refresh_from_db()
    assert (comparison.status, comparison.attempts) == ("generating", 1)
    # Held by a live process (this one) with a fresh heartbeat: nobody else gets it...
    assert not Lease(generation.GENERATION, comparison.pk).claim()
    # ...but the task's retry, naming the lease its failed run held, does, as the same attempt.
    retry = Lease(generation.GENERATION, comparison.pk)
    assert retry.claim(previous=first.worker)
    comparison.refresh_from_db()
    assert (comparison.worker, comparison.attempts) == (retry.worker, 1)
    assert first.worker.startswith(f"{socket.gethostname()}:{os.getpid()}:")
