"""Fixtures for the Django apps: model versions on disk, an open batch, users in roles.

`tiny_model_dir` is modelcore.tiny's random 2-layer model with SmolLM2's real tokenizer and
chat template: the web code counts and checks prompts with the real format, and a worker samples
from it in milliseconds. `smollm2_model_dir` is the real base model, for tests where the words matter. `celery_worker`
is a real worker process on the test database and the configured broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import save_checkpoint
from modelcore.gguf_import import import_gguf
from modelcore.tiny import save_tiny_model


@pytest.fixture(scope="session")
def artifacts_root() -> Path:
    from django.conf import settings

    return Path(settings.ARTIFACTS_ROOT)


@pytest.fixture(scope="session")
def tiny_model_dir(artifacts_root: Path) -> Path:
    return save_tiny_model(artifacts_root / "models" / "tiny", overwrite=True)


@pytest.fixture(scope="session")
def smollm2_model_dir(artifacts_root: Path) -> Path:
    model, tokenizer = import_gguf(smollm2_gguf_path())
    return save_checkpoint(model, tokenizer, artifacts_root / "models" / "smollm2", overwrite=True)


def register(directory: Path, artifacts_root: Path, name: str):
    from rlhf.models import ModelVersion
    from rlhf.services import register_checkpoint

    version = ModelVersion.objects.create(
        name=name, artifact_path=str(directory.relative_to(artifacts_root))
    )
    return register_checkpoint(version, publish=True)


@pytest.fixture
def tiny_version(db, tiny_model_dir: Path, artifacts_root: Path):
    return register(tiny_model_dir, artifacts_root, "tiny")


@pytest.fixture
def batch(tiny_version):
    from annotation.models import Batch

    return Batch.objects.create(
        name="test-week", model_a=tiny_version, model_b=tiny_version, max_new_tokens=8
    )


@pytest.fixture
def eager_tasks(settings):
    """Tasks run in the caller when their transaction commits (the worker's code, inline)."""
    from tandem.celery import app

    # The lease's heartbeat thread has a connection of its own, which on PostgreSQL cannot see
    # this test's uncommitted rows: a beat would find the lease gone and stop a run that takes
    # longer than one interval (the first run of a process loads the model). None comes.
    settings.GENERATION_HEARTBEAT_SECONDS = 3600
    settings.GENERATION_STALE_SECONDS = 10_000
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def make(username: str, *roles: str, staff: bool = False):
        user = get_user_model().objects.create_user(
            username=username, password=f"{username}-password", is_staff=staff
        )
        # get_or_create: the migration made the groups, but a transactional test's flush
        # empties the tables after each test.
        user.groups.add(
            *(Group.objects.get_or_create(name=role)[0] for role in roles or ("annotator",))
        )
        return user

    return make


def label_week(batch, annotators, count: int, *, heldout_every: int) -> None:
    """`count` labelled first-turn comparisons in `batch`, written with the ORM (the annotation
    app's own tests cover how labels get there): every third a risky safety prompt, every
    `heldout_every`-th held out, labelled in turn by `annotators` with the strengths in turn.
    The chosen response answers, the rejected one does not, so a reward model can learn."""
    from annotation.models import Comparison, Dialogue, Label, Response, Turn
    from rlhf.train.data import SAFETY_LABELS, STRENGTHS

    for i in range(count):
        risky = i % 3 == 0
        dialogue = Dialogue.objects.create(
            batch=batch,
            source=Dialogue.Source.IMPORTED,
            guideline="safety" if risky else "helpfulness",
            risky=risky,
        )
        turn = Turn.objects.create(
            dialogue=dialogue, index=0, prompt=f"What is {i} plus {i}?", prompt_tokens=8
        )
        comparison = Comparison.objects.create(
            turn=turn, batch=batch, left="a", status="ready", heldout=i % heldout_every == 0
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
            safety=SAFETY_LABELS[i % len(SAFETY_LABELS)] if risky else "both_safe",
            time_spent_ms=5000,
        )


REPO = Path(__file__).resolve().parents[1]


class Worker:
    """A Celery worker process and its log."""

    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process, self.log_path = process, log_path

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Celery worker did not start:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _test_database_url() -> str:
    """A URL for the test database (whose name exists once django_db_setup has run)."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(name).resolve()}"
    return urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{name}").geturl()


def start_worker(
    log_path: Path, *, queues: str, node: str, extra_env: dict[str, str] | None = None
) -> Worker:
    """A Celery worker process on `queues`, the test database and the configured broker: the
    filesystem one of the embedded default, or Redis. The solo pool runs each task in the
    worker's own process, so a task that kills itself (rlhf.train.faults) kills the worker.

    It gets this process's environment (TANDEM_HOME, hence the broker folders and artifacts
    root; SECRET_KEY, HTTPS=0, REDIS_URL) with DATABASE_URL pointing at the test database.
    """
    env = {
        **os.environ,
        "DATABASE_URL": _test_database_url(),
        "PYTHONUNBUFFERED": "1",
        # One thread: on a busy machine (the browser, the live server and other jobs share the
        # cores) OpenMP's spinning threads made sampling 7-10x slower than one plain thread.
        "OMP_NUM_THREADS": "1",
        **(extra_env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "tandem", "worker"),
                *("-Q", queues, "-c", "1", "--pool", "solo", "-n", node),
                *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, log_path)


def stop_worker(worker: Worker) -> None:
    worker.process.terminate()  # warm shutdown: finishes the task at hand, then exits
    try:
        worker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
    if "Traceback" in worker.log():
        print(f"--- Celery worker log ---\n{worker.log()[-6000:]}")


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, tmp_path_factory) -> Iterator[Worker]:
    """A real worker on the `generate` and `default` queues (see `start_worker`). It boots in
    the background; call `wait_ready()` before relying on it."""
    from tandem.celery import app

    # Messages left by earlier runs would be sampled for comparisons that no longer exist.
    app.control.purge()
    worker = start_worker(
        tmp_path_factory.mktemp("worker") / "worker.log",
        queues="generate,default",
        node=f"tandem-test-{os.getpid()}@localhost",
    )
    try:
        yield worker
    finally:
        stop_worker(worker)
