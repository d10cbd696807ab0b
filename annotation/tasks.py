"""Annotation tasks: sampling the two responses of a comparison (queue `generate`). The work
itself is annotation.generation; the weekly rollover is the loop's (rlhf.tasks)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from annotation import generation
from rlhf.train import faults

log = logging.getLogger(__name__)


# Acknowledged late (the app's default): a worker killed mid-task leaves the message to Redis,
# which hands it out again after the broker's visibility timeout; the reconciler usually gets
# there first (tandem.leases), and the lease makes the second delivery a no-op.
@shared_task(bind=True, name="annotation.tasks.generate_comparison", max_retries=None)
def generate_comparison(self, comparison_id: int, previous: str = "") -> str:
    try:
        return generation.generate(comparison_id, previous=previous)
    except generation.DatabaseAway as away:
        attempt = self.request.retries + 1
        faults.reached("generate:retry")
        if attempt > settings.GENERATION_MAX_RETRIES:
            log.error(
                "comparison %s: giving up after %s retries (%s)", comparison_id, attempt, away
            )
            generation.release_for_later(comparison_id, away.holder)
            return "database away: left to the reconciler"
        # Exponential backoff, at most a minute: a restart takes seconds, an outage minutes.
        countdown = min(2 ** (attempt - 1), 60)
        log.warning("comparison %s: %s; retry %s in %s s", comparison_id, away, attempt, countdown)
        raise self.retry(
            countdown=countdown,
            kwargs={"comparison_id": comparison_id, "previous": away.holder},
        ) from away
