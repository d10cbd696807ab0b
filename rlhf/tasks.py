"""The loop's Celery tasks: thin, ids in, a service or the pipeline called.

`train_iteration` runs on the `train` queue, one at a time per GPU (the train worker runs
`-c 1 --max-tasks-per-child 1`: a fresh process per job, so GPU memory and CUDA state never
carry over, and CUDA is never touched in the worker's parent process, which only forks).
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from rlhf import pipeline, services

log = logging.getLogger(__name__)


# Acknowledged on receipt, unlike the app's default (acks_late): a job runs for hours, longer
# than any broker visibility timeout one would set, and Redis would hand an unacknowledged one
# to a second worker while the first still trains. The iteration's row is the truth instead:
# a worker holds its lease with a heartbeat, and `requeue_stale_iterations` enqueues it again
# once that lease is stale or its process is gone (see rlhf.pipeline).
@shared_task(name="rlhf.tasks.train_iteration", acks_late=False)
def train_iteration(iteration_id: int) -> str:
    return pipeline.run_iteration(iteration_id)


@shared_task(name="rlhf.tasks.requeue_stale_iterations")
def requeue_stale_iterations() -> list[int]:
    return pipeline.requeue_stale()


@shared_task(name="rlhf.tasks.weekly_rollover")
def weekly_rollover() -> int | None:
    iteration = services.weekly_rollover()
    return iteration.pk if iteration else None


@worker_ready.connect
def resume_interrupted_iterations(sender, **kwargs) -> None:
    """A worker that starts picks up the iterations a dead worker left (on this host at once;
    elsewhere once their heartbeat is stale)."""
    queues = {queue.name for queue in sender.app.amqp.queues.consume_from.values()}
    if "train" in queues:
        requeued = pipeline.requeue_stale()
        if requeued:
            log.info("requeued interrupted iterations %s", requeued)
