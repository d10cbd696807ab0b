"""A closed week of labels on the tiny model, workers on the `train` queue, and waiting for an
iteration to finish.

The week is written with the ORM (the annotation app's own tests cover how labels get there):
40 comparisons of a first-turn prompt, every third a risky safety prompt, every fifth held out,
each labelled once with strengths in turn; the chosen response answers, the rejected one
does not, so a reward model has something to learn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from rlhf.train.data import SAFETY_LABELS, STRENGTHS
from tests.django_fixtures import Worker, start_worker, stop_worker


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _label_week(batch, annotators, count: int) -> None:
    from annotation.models import Comparison, Dialogue, Label, Response, Turn

    for i in range(count):
        safety = i % 3 == 0
        dialogue = Dialogue.objects.create(
            batch=batch,
            source=Dialogue.Source.IMPORTED,
            guideline="safety" if safety else "helpfulness",
            risky=safety,
        )
        turn = Turn.objects.create(
            dialogue=dialogue, index=0, prompt=f"What is {i} plus {i}?", prompt_tokens=8
        )
        comparison = Comparison.objects.create(
            turn=turn, batch=batch, left="a", status="ready", heldout=i % 5 == 0
        )
        texts = {"a": f"{i} plus {i} is {2 * i}.", "b": "I would rather not say."}
        for side, text in texts.items():
            Response.objects.create(
                comparison=comparison,
                side=side,
                model_version=batch.model_a,
                temperature=0.7,
                top_p=0.9,
                max_new_tokens=16,
                seed=i,
                text=text,
                num_tokens=8,
                finish_reason="stop",
            )
        Label.objects.create(
            comparison=comparison,
            annotator=annotators[i % len(annotators)],
            chosen="a",
            strength=STRENGTHS[i % len(STRENGTHS)],
            safety=SAFETY_LABELS[0] if not safety else SAFETY_LABELS[i % len(SAFETY_LABELS)],
            time_spent_ms=5000,
        )


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
    _label_week(closed, annotators, 40)
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
