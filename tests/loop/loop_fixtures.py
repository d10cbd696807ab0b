"""What the loop's tests share besides fixtures: fast hyper-parameters and waiting for a
worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.django_fixtures import Worker

# Small enough for the tiny model to run a whole iteration in seconds; resume checkpoints every
# two steps so the kill tests have one to resume from.
FAST = {
    "reward": {"batch_size": 4, "micro_batch_size": 4, "checkpoint_every": 2},
    "rejection_sampling": {
        "samples": 2,
        "max_new_tokens": 8,
        # Short rows: packing puts one exchange in each, so the fine-tuning has steps to kill.
        "max_seq_len": 96,
        "batch_size": 2,
        "micro_batch_size": 2,
        "checkpoint_every": 2,
    },
    "dpo": {"batch_size": 4, "micro_batch_size": 4, "checkpoint_every": 2},
    "ppo": {
        "steps": 2,
        "batch_size": 4,
        "minibatch_size": 2,
        "micro_batch_size": 2,
        "max_new_tokens": 8,
        "eval_every": 1,
    },
    "evaluate": {"max_new_tokens": 8},
}


def wait_for(condition: Callable[[], bool], worker: Worker, *, timeout: float = 300) -> None:
    """Poll until `condition()` holds, or fail with the worker's log (if it died, at once)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out; worker log:\n{worker.log()[-6000:]}")
        time.sleep(0.2)


def finished(iteration) -> Callable[[], bool]:
    from rlhf.models import Iteration

    def check() -> bool:
        iteration.refresh_from_db()
        return iteration.status in Iteration.FINISHED

    return check


def pause_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pauses"
    folder.mkdir(exist_ok=True)
    return folder
