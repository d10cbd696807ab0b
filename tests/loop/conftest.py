"""A closed week of labels on the tiny model, workers on the `train` queue, and waiting for an
iteration to finish.

The week is 40 labelled comparisons (tests.django_fixtures.label_week), every fifth held out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from tests.django_fixtures import Worker, label_week, start_worker, stop_worker


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def loop(transactional_db, tiny_version, make_user):
    """A closed week of labels (served by the tiny model), the week after it open, and a
    researcher. Transactional: the worker processes must see the rows."""
    from django.utils import timezone

    from annotation.models import Batch

    annotators = [make_user(name) for name in ("ann", "bea", "cid")]
    closed = Batch.objects.create(
        name="2026-w47",
        model_a=tiny_version,
        model_b=tiny_version,
        status=Batch.Status.CLOSED,
        closed_at=timezone.now(),
    )
    label_week(closed, annotators, 40, heldout_every=5)
    current = Batch.objects.create(name="2026-w48", model_a=tiny_version, model_b=tiny_version)
    return SimpleNamespace(
        closed=closed,
        current=current,
        base=tiny_version,
        researcher=make_user("rita", "researcher"),
    )


@pytest.fixture
def train_workers(django_db_setup, tmp_path) -> Iterator[Callable[..., Worker]]:
    """Starts workers on the `train` and `default` queues, each with extra environment (a fault
    point), and stops whatever is still running at the end."""
    from tandem.celery import app

    app.control.purge()
    started: list[Worker] = []

    def start(**extra_env: str) -> Worker:
        worker = start_worker(
            tmp_path / f"train-worker-{len(started)}.log",
            queues="train,default",
            node=f"tandem-train-{os.getpid()}-{len(started)}@localhost",
            extra_env=extra_env,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            stop_worker(worker)
