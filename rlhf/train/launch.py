"""Running a stage on several processes from Python, as torchrun would: one process per GPU (or
per CPU share, with gloo), the progress callback kept in the calling process.

    metrics = launch(train_reward_model, config, progress, processes=4)

The ranks are started with torch's elastic launcher (the library under torchrun) and run the
stage function itself, so the same code runs under `torchrun -m rlhf.train` and here. Rank 0's
progress reports travel to the caller over a queue and wait for the caller's answer (stop or
not) on another, so a stop lands at the same step as in one process, and a caller that records progress in a database (the loop's worker) does so
in its own process. Each rank dies with the process that launched it (Linux's parent-death
signal): a launcher killed outright leaves no rank training behind it.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import queue
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from rlhf.train.runs import PhaseMetrics, Progress

Stage = Callable[[Any, Progress | None], dict[str, Any]]
_PR_SET_PDEATHSIG = 1


def launch(
    stage: Stage, config: Any, progress: Progress | None, *, processes: int
) -> dict[str, Any]:
    """`stage(config, progress)` on `processes` ranks; returns rank 0's metrics."""
    if processes == 1:
        return stage(config, progress)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        reports, answers = manager.Queue(), manager.Queue()
        done = threading.Event()
        relay = threading.Thread(
            target=_relay, args=(reports, answers, done, progress), daemon=True
        )
        relay.start()
        try:
            results = elastic_launch(_launch_config(processes), _rank)(
                stage, config, reports, answers
            )
        finally:
            done.set()
            relay.join()
    return results[0]


def _launch_config(processes: int) -> LaunchConfig:
    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        run_id=uuid.uuid4().hex,
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port, like torchrun --standalone
        max_restarts=0,  # a failed rank fails the stage; the loop's retry is a new attempt
        start_method="spawn",
    )


def _relay(reports: Any, answers: Any, done: threading.Event, progress: Progress | None) -> None:
    """Hand rank 0's reports to `progress` and its answers back, until the ranks are done."""
    while not done.is_set():
        try:
            step, total, loss, metrics, phase = reports.get(timeout=0.1)
        except queue.Empty:
            continue
        wanted = progress(step, total, loss, PhaseMetrics(metrics, phase)) if progress else False
        answers.put(bool(wanted))


def _rank(stage: Stage, config: Any, reports: Any, answers: Any) -> dict[str, Any]:
    if sys.platform == "linux":  # die with the launcher, never train on as an orphan
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def report(step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        phase = getattr(metrics, "phase", "train")
        reports.put((step, total, loss, dict(metrics), phase))
        return answers.get()

    try:
        return stage(config, report)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
