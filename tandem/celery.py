"""The Celery app. Queues: `default` (bookkeeping), `generate` (sampling responses for
annotators; CPU or a small GPU) and `train` (reward models and policy training; one job per GPU).
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tandem.settings")

app = Celery("tandem")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("default"), Queue("generate"), Queue("train")]
app.conf.task_default_queue = "default"
app.conf.task_routes = {
    "annotation.tasks.generate_*": {"queue": "generate"},
    "rlhf.tasks.train_*": {"queue": "train"},
}
# Results live in the database rows the tasks update, not in a result backend.
app.conf.task_ignore_result = True
# A task is acknowledged when it ends, so a worker killed mid-task leaves it to be run again
# (training acknowledges on receipt instead: rlhf.tasks), and each worker takes one task at a
# time (generation and training are long). Either way a lost task's row is found by the
# reconciler (tandem.leases).
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
app.conf.worker_prefetch_multiplier = 1
# The beat schedule (the weekly rollover, the reconciler) is CELERY_BEAT_SCHEDULE in the settings.
app.autodiscover_tasks()
app.conf.imports = ["tandem.tasks"]  # the reconciler: tandem is the project, not an app
