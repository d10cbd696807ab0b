"""The research API's test world: a closed week of labels on the tiny model and the week after
it open, an iteration on it, a ready policy it trained, and clients for each role.

The week is written by tests.django_fixtures.label_week.
Throttle counts live in a cache of each test's own, so no test inherits another's.
"""

from __future__ import annotations

import itertools
import shutil
from types import SimpleNamespace

import pytest

from tests.django_fixtures import label_week

_caches = itertools.count()


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    """make_user hashes passwords with PBKDF2's production cost (about half a second each)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def own_throttle_counts(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"research-api-{next(_caches)}",
        }
    }


@pytest.fixture
def people(make_user):
    return SimpleNamespace(
        annotator=make_user("ann", "annotator"),
        researcher=make_user("rita", "researcher"),
        admin=make_user("ada", staff=True),
    )


@pytest.fixture
def world(tiny_version, people):
    """The closed week 2026-w47 (8 labels, 2 held out), the open week 2026-w48, a queued
    iteration on w47 and the ready policy it trained."""
    from django.utils import timezone

    from annotation.models import Batch
    from rlhf.models import Iteration, IterationStep, ModelVersion

    closed = Batch.objects.create(
        name="2026-w47",
        model_a=tiny_version,
        model_b=tiny_version,
        status=Batch.Status.CLOSED,
        closed_at=timezone.now(),
    )
    label_week(closed, [people.annotator], 8, heldout_every=4)
    current = Batch.objects.create(name="2026-w48", model_a=tiny_version, model_b=tiny_version)
    iteration = Iteration.objects.create(
        batches=[closed.name], algorithm="dpo", parent=tiny_version, created_by=people.researcher
    )
    IterationStep.objects.bulk_create(
        IterationStep(iteration=iteration, index=index, name=name)
        for index, name in enumerate(Iteration.step_names("dpo"))
    )
    # Ids come round again on SQLite: an earlier test's log must not be this iteration's.
    shutil.rmtree(iteration.directory, ignore_errors=True)
    trained = ModelVersion.objects.create(
        name="tiny-dpo-1",
        artifact_path=tiny_version.artifact_path,
        sha256=tiny_version.sha256,
        status=ModelVersion.Status.READY,
        parent=tiny_version,
        iteration=iteration,
        trained_on=[closed.name],
        metrics={"win_rate": 0.5},
    )
    return SimpleNamespace(
        base=tiny_version, closed=closed, current=current, iteration=iteration, trained=trained
    )


@pytest.fixture
def client_for(people):
    """An APIClient for a role: "anonymous", "annotator", "researcher" or "admin", with an API
    token (the researcher's and admin's) or a session (the annotator's: tokens are for
    researchers)."""
    from rest_framework.test import APIClient

    from rlhf.authentication import create_api_token

    def make(role: str) -> APIClient:
        client = APIClient()
        if role == "annotator":
            client.force_login(people.annotator)
        elif role != "anonymous":
            _, token = create_api_token(user=getattr(people, role), name="tests")
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def researcher(client_for):
    return client_for("researcher")


@pytest.fixture
def concrete(world):
    """A documented path with its parameters filled in from `world`."""

    def fill(path: str) -> str:
        name = world.trained.name if path.startswith("/api/models/") else world.closed.name
        return path.replace("{id}", str(world.iteration.pk)).replace("{name}", name)

    return fill
