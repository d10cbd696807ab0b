"""Work whose database row is the truth: leases, heartbeats and the reconciler.

Two kinds of work run on Celery workers: sampling a comparison's responses (queue `generate`,
seconds to minutes) and an iteration of the loop (queue `train`, hours). Either may be lost
on the way: the broker dies with messages in memory (Redis without persistence), a prompt's
enqueue fails after its row committed, a worker is SIGKILLed mid-task, the database goes away
under a task. Rather than trusting the broker to deliver every message exactly once, each
row says what is left to do, and one mechanism brings the two back in line:

- A worker *claims* a row before working on it: a compare-and-set on the row's lease
  (`worker`, `heartbeat_at`) as read, so of two workers that both saw it free only one gets it,
  and a duplicate message (a redelivery, a re-enqueue) is harmless. While it works, a thread
  renews `heartbeat_at`.
- The *reconciler* (`reconcile`, run by beat every RECONCILE_SECONDS and by every worker as it
  starts) finds active rows no live worker holds and enqueues them again: a lease whose
  heartbeat is stale, or whose process is gone from this host, is released; a row no worker
  ever took is re-sent once it has waited longer than the stale time while its queue holds no
  message (a long queue is not a lost message). A row whose workers died `max_attempts` times
  is marked failed with the reason, never retried forever.

We chose this over a transactional outbox: an outbox needs a relay process of its own and
still cannot tell a message lost in the broker or a worker killed mid-task from one in
flight, which the lease's heartbeat does. The reconciler covers all three with one query per
pass.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeasedWork:
    """A kind of work kept on rows with `status`, `worker`, `heartbeat_at`, `attempts` and
    `created_at` columns. Durations are read from settings (by name) when used, so a test or
    an operator's change applies at once."""

    name: str
    queue: str
    model: type[models.Model]
    # Statuses of rows a worker may still pick up (or is working on).
    active: tuple[str, ...]
    # Status changes on a claim ({"pending": "generating"}) and on a dead worker's release.
    on_claim: dict[str, str]
    on_release: dict[str, str]
    heartbeat_setting: str
    stale_setting: str
    max_attempts_setting: str
    # Sends the task for one row now (the reconciler's re-enqueue).
    send: Callable[[int], Any]
    # Marks rows failed, with the message, once their workers died max_attempts times.
    give_up: Callable[[models.QuerySet, str], int]
    # Fields a claim sets from the row as it was read (an iteration's first start time).
    claim_fields: Callable[[models.Model, datetime], dict[str, Any]] = field(
        default=lambda row, now: {}
    )

    @property
    def heartbeat_seconds(self) -> int:
        return getattr(settings, self.heartbeat_setting)

    @property
    def stale_seconds(self) -> int:
        return getattr(settings, self.stale_setting)

    @property
    def max_attempts(self) -> int:
        return getattr(settings, self.max_attempts_setting)

    def rows(self) -> models.QuerySet:
        return self.model.objects.filter(status__in=self.active)

    def lease_is_free(self, row: models.Model, now: datetime) -> bool:
        if not row.worker:
            return True
        stale = now - timedelta(seconds=self.stale_seconds)
        return row.heartbeat_at is None or row.heartbeat_at < stale or holder_is_gone(row.worker)


def worker_identity() -> str:
    """host:pid:nonce. The nonce tells two runs of one process apart (a solo worker runs tasks
    one after another in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_gone(worker: str) -> bool:
    """Whether the process named by a lease has certainly died: it ran on this host and no
    such process exists. (Another host's process is judged by its heartbeat alone.)"""
    host, _, rest = worker.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, run by another user
        return False
    return False


class Lease:
    """This worker's hold on one row, renewed from a thread of its own so long phases without
    writes (loading a model, a long evaluation) keep it alive."""

    def __init__(self, work: LeasedWork, pk: int, worker: str | None = None) -> None:
        self.work = work
        self.pk = pk
        self.worker = worker or worker_identity()
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, *, previous: str = "") -> bool:
        """Take the row if it is active and its lease is free, or held by `previous` (this
        task's own earlier run, retrying after a transient error: not a new attempt)."""
        work, now = self.work, timezone.now()
        current = work.rows().filter(pk=self.pk).first()
        if current is None:
            return False
        own = bool(previous) and current.worker == previous
        if not own and not work.lease_is_free(current, now):
            return False
        if not own and current.attempts >= work.max_attempts:
            give_up(work, current, now)
            return False
        taken = (
            work.rows()
            .filter(pk=self.pk, worker=current.worker, heartbeat_at=current.heartbeat_at)
            .update(
                worker=self.worker,
                heartbeat_at=now,
                attempts=F("attempts") + (0 if own else 1),
                **work.claim_fields(current, now),
            )
        )
        if taken:
            for before, after in work.on_claim.items():
                work.model.objects.filter(pk=self.pk, status=before).update(status=after)
        return bool(taken)

    def beat(self) -> None:
        renewed = self.work.model.objects.filter(pk=self.pk, worker=self.worker).update(
            heartbeat_at=timezone.now()
        )
        if not renewed:
            self.lost.set()

    def start_heartbeat(self) -> None:
        def renew() -> None:
            try:
                while not self._done.wait(self.work.heartbeat_seconds):
                    try:
                        self.beat()
                    except DatabaseError:
                        # The database is away: try again next time on a new connection. The
                        # work goes on; if the outage outlasts the stale time, the reconciler
                        # may hand the row to another worker, and `lost` stops this one.
                        log.warning("%s %s: heartbeat failed", self.work.name, self.pk)
                        connection.close()
            finally:
                connection.close()  # this thread's own connection

        self._thread = threading.Thread(
            target=renew, name=f"{self.work.name}-heartbeat", daemon=True
        )
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def release(self, **final: Any) -> None:
        """Stop the heartbeat and give the lease up, writing `final` fields with it."""
        self.stop_heartbeat()
        self.work.model.objects.filter(pk=self.pk, worker=self.worker).update(worker="", **final)


def give_up(work: LeasedWork, row: models.Model, now: datetime) -> None:
    message = (
        f"gave up after {row.attempts} attempts: the worker was lost each time "
        f"(last: {row.worker or 'never taken'})"
    )
    log.error("%s %s: %s", work.name, row.pk, message)
    work.give_up(
        work.model.objects.filter(pk=row.pk, worker=row.worker, heartbeat_at=row.heartbeat_at),
        message,
    )


@dataclass
class Reconciled:
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def reconcile(work: LeasedWork, *, now: datetime | None = None) -> Reconciled:
    """Enqueue again every active row of `work` that no live worker holds and whose message
    may be lost; mark failed those whose workers died `max_attempts` times."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=work.stale_seconds)
    outcome = Reconciled()
    rows = work.rows().annotate(waiting_since=Coalesce("heartbeat_at", "created_at"))
    unleased_due = rows.filter(worker="", waiting_since__lt=stale)
    queue_is_empty = None  # asked of the broker only when some row needs it
    for row in rows.exclude(worker="").order_by("pk"):
        if not work.lease_is_free(row, now):
            continue
        if row.attempts >= work.max_attempts:
            give_up(work, row, now)
            outcome.failed.append(row.pk)
            continue
        released = (
            work.model.objects.filter(pk=row.pk, worker=row.worker, heartbeat_at=row.heartbeat_at)
        ).update(worker="", heartbeat_at=now)
        if released:
            for before, after in work.on_release.items():
                work.model.objects.filter(pk=row.pk, status=before).update(status=after)
            outcome.requeued.append(row.pk)
    for row in unleased_due.order_by("pk"):
        if queue_is_empty is None:
            queue_is_empty = waiting_messages(work.queue) == 0
        if not queue_is_empty:
            break
        # Stamped so the row waits another stale period before it is sent again.
        if work.model.objects.filter(pk=row.pk, worker="").update(heartbeat_at=now):
            outcome.requeued.append(row.pk)
    for pk in outcome.requeued:
        send_safely(work, pk)
    if outcome.requeued or outcome.failed:
        log.info("%s: requeued %s, failed %s", work.name, outcome.requeued, outcome.failed)
    return outcome


def waiting_messages(queue: str) -> int:
    """Messages waiting in a broker queue (not those a worker has reserved)."""
    from kombu.exceptions import ChannelError

    from tandem.celery import app

    with app.connection_for_read() as broker:
        try:
            return broker.default_channel.queue_declare(queue=queue, passive=True).message_count
        except ChannelError:  # Redis keeps no empty list: a queue never used, or emptied
            return 0


def send_safely(work: LeasedWork, pk: int) -> bool:
    """Send a row's task now. A broker that is away is logged, not raised: the row stays
    active and the reconciler sends it again once the broker is back."""
    from kombu.exceptions import OperationalError

    try:
        work.send(pk)
    except (OperationalError, OSError) as error:
        log.warning("%s %s: not enqueued (%s); the reconciler will send it", work.name, pk, error)
        return False
    return True


def send_on_commit(work: LeasedWork, pk: int) -> None:
    """Send a row's task once the current transaction commits (a worker must find the row),
    never failing the request that wrote it."""
    transaction.on_commit(lambda: send_safely(work, pk))
