"""A real Celery worker process samples a comparison: on the embedded default (SQLite and the
filesystem broker, what `scripts/run.sh` starts) in the first test pass, and on PostgreSQL and
Redis in the second."""

from __future__ import annotations

import time

from annotation import services
from annotation.models import Comparison


def test_a_worker_process_samples_the_pair(transactional_db, batch, make_user, celery_worker):
    comparison = services.start_dialogue(
        author=make_user("alice"), prompt="Name a fruit.", guideline="helpfulness"
    ).comparison
    celery_worker.wait_ready()
    deadline = time.monotonic() + 120
    while comparison.status in (Comparison.Status.PENDING, Comparison.Status.GENERATING):
        assert time.monotonic() < deadline, celery_worker.log()[-4000:]
        time.sleep(0.2)
        comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.READY, comparison.error
    for response in comparison.responses.all():
        assert response.text and response.num_tokens >= 1 and response.generation_ms is not None
    assert "generate_comparison[" in celery_worker.log()
