"""The loop's Celery tasks: thin, ids in, a service or the pipeline called.

`train_iteration` runs on the `train` queue, one at a time per GPU (the train worker runs
`-c 1 --max-tasks-per-child 1`: a fresh process per job, so GPU memory and CUDA state never
carry over, and CUDA is never touched in the worker's parent process, which only forks).
"""

from __future__ import annotations

from celery import shared_task

from rlhf import pipeline, services


# Acknowledged on receipt, unlike the app's default (acks_late): a job runs for hours, longer
# than any broker visibility timeout one would set, and Redis would hand an unacknowledged one
# to a second worker while the first still trains. The iteration's row is the truth instead:
# a worker holds its lease with a heartbeat, and the reconciler (tandem.tasks) enqueues it
# again once that lease is stale or its process is gone (see tandem.leases).
@shared_task(name="rlhf.tasks.train_iteration", acks_late=False)
def train_iteration(iteration_id: int) -> str:
    return pipeline.run_iteration(iteration_id)


@shared_task(name="rlhf.tasks.weekly_rollover")
def weekly_rollover() -> int | None:
    iteration = services.weekly_rollover()
    return iteration.pk if iteration else None
