"""The reconciler's task (beat, every RECONCILE_SECONDS) and its run at every worker's start:
one pass of tandem.leases.reconcile over each kind of leased work."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from annotation.generation import GENERATION
from rlhf.pipeline import TRAINING
from tandem.leases import reconcile

log = logging.getLogger(__name__)

LEASED_WORK = (GENERATION, TRAINING)


@shared_task(name="tandem.tasks.reconcile")
def reconcile_all() -> dict[str, dict[str, list[int]]]:
    return {work.name: vars(reconcile(work)) for work in LEASED_WORK}


@worker_ready.connect
def reconcile_own_queues(sender, **kwargs) -> None:
    """A worker that starts picks up the rows a dead worker left on its queues (on this host
    at once; elsewhere once their heartbeat is stale)."""
    queues = {queue.name for queue in sender.app.amqp.queues.consume_from.values()}
    for work in LEASED_WORK:
        if work.queue in queues:
            reconcile(work)
