"""Sampling a comparison's two responses, as leased work (tandem.leases).

The comparison's row is the truth, not the broker message: a worker claims the row's lease
(status pending -> generating), renews it from a heartbeat thread, samples both responses
together (rlhf.serving.sample_replies) and streams their text and token counts into the
Response rows; the reconciler hands a row whose worker died (SIGKILL, a lost machine)
to the next worker and re-sends one whose message was lost (Redis restarted empty, an enqueue
that failed after the prompt committed). A row whose workers died GENERATION_MAX_ATTEMPTS
times is marked failed with the reason.

A run is idempotent: it starts from the row's seeds, so sampling again gives the same text,
and a run that finds the row done, failed or leased to a live worker does nothing. A database
error mid-run is not the comparison's fault: the run stops with `DatabaseAway`, keeping its
lease, and the task retries with backoff, taking its own lease back (tandem.leases.Lease.claim's
`previous`) without counting an attempt.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time

from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from annotation.models import Comparison, Response
from modelcore.chat import Message
from modelcore.sampling import SamplingParams
from rlhf.serving import sample_replies
from rlhf.train import faults
from tandem.leases import Lease, LeasedWork

log = logging.getLogger(__name__)

# Streamed text is written to the database at most this often (seconds): the page polls it.
STREAM_INTERVAL = 0.25


def _send(comparison_id: int) -> None:
    from annotation.tasks import generate_comparison  # the task module imports this one

    generate_comparison.delay(comparison_id)


def _give_up(rows, message: str) -> int:
    return rows.update(worker="", status=Comparison.Status.FAILED, error=message)


GENERATION = LeasedWork(
    name="comparison",
    queue="generate",
    model=Comparison,
    active=(Comparison.Status.PENDING, Comparison.Status.GENERATING),
    on_claim={Comparison.Status.PENDING: Comparison.Status.GENERATING},
    on_release={Comparison.Status.GENERATING: Comparison.Status.PENDING},
    heartbeat_setting="GENERATION_HEARTBEAT_SECONDS",
    stale_setting="GENERATION_STALE_SECONDS",
    max_attempts_setting="GENERATION_MAX_ATTEMPTS",
    send=_send,
    give_up=_give_up,
)


class DatabaseAway(Exception):
    """The database failed under a run (a restart, an outage): retry later. `holder` is the
    run's lease, for the retry to take back ("" if it never got one)."""

    def __init__(self, holder: str, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.holder = holder


class _LeaseLost(Exception):
    """Another worker took the row over (this one's heartbeat failed for too long)."""


def generate(comparison_id: int, *, previous: str = "") -> str:
    """Sample both responses of a comparison if this worker gets its lease. Returns what
    happened (for the task's log)."""
    lease = Lease(GENERATION, comparison_id)
    try:
        if not lease.claim(previous=previous):
            return "not claimed"
    except (OperationalError, InterfaceError) as error:
        _drop_connection()
        raise DatabaseAway(previous, error) from error
    lease.start_heartbeat()
    try:
        _sample_both(comparison_id, lease)
    except (OperationalError, InterfaceError) as error:
        lease.stop_heartbeat()
        _drop_connection()
        raise DatabaseAway(lease.worker, error) from error
    except _LeaseLost:
        lease.stop_heartbeat()
        log.warning("comparison %s: lease lost to another worker", comparison_id)
        return "lease lost"
    except Exception as error:
        log.exception("generation failed for comparison %s", comparison_id)
        lease.release(status=Comparison.Status.FAILED, error=f"{type(error).__name__}: {error}")
        return "failed"
    lease.release(status=Comparison.Status.READY, ready_at=timezone.now())
    return "ready"


def release_for_later(comparison_id: int, holder: str) -> None:
    """A run that gives up retrying puts the row back to pending for the reconciler (if the
    database answers; if not, the lease goes stale and the reconciler finds it that way)."""
    try:
        Comparison.objects.filter(pk=comparison_id, worker=holder).update(
            worker="", status=Comparison.Status.PENDING
        )
    except DatabaseError:
        _drop_connection()


def _drop_connection() -> None:
    """Forget a connection the database dropped, so the next query opens a new one."""
    with contextlib.suppress(DatabaseError):
        connection.close()


def _sample_both(comparison_id: int, lease: Lease) -> None:
    comparison = Comparison.objects.select_related("turn__dialogue").get(pk=comparison_id)
    messages = _messages(comparison)
    responses = list(comparison.responses.select_related("model_version"))
    # A run that starts again samples from the start (the same seeds give the same text).
    Response.objects.filter(comparison=comparison).update(text="", num_tokens=0, finish_reason="")
    started = time.monotonic()
    stream = _Stream(responses, lease)
    replies = sample_replies(
        messages,
        [(response.model_version, _params(response)) for response in responses],
        [functools.partial(stream.grew, response.pk) for response in responses],
    )
    with transaction.atomic():
        # Written only while this run holds the lease: a run that lost it must not overwrite
        # the text of the worker that took over.
        if not Comparison.objects.select_for_update().filter(pk=comparison_id, worker=lease.worker):
            raise _LeaseLost
        for response, (text, completion) in zip(responses, replies, strict=True):
            Response.objects.filter(pk=response.pk).update(
                text=text,
                # The stop token ends the reply but is not part of it.
                num_tokens=len(completion.tokens) - (completion.finish_reason == "stop"),
                finish_reason=completion.finish_reason,
                generation_ms=round((stream.finished_at[response.pk] - started) * 1000),
            )


def _params(response: Response) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=response.max_new_tokens,
        temperature=response.temperature,
        top_p=response.top_p,
        seed=response.seed,
    )


class _Stream:
    """The responses' text and token counts as they grow, written to their rows at most every
    STREAM_INTERVAL (each side's first token at once), while this run holds the lease."""

    def __init__(self, responses: list[Response], lease: Lease) -> None:
        self._lease = lease
        self._unwritten: dict[int, tuple[str, int]] = {}
        self._last_write = float("-inf")
        self._shown: set[int] = set()  # the responses whose first text is written
        # When each response got its last token: its generation time, as the pair samples
        # together and one side may finish first.
        self.finished_at = {response.pk: time.monotonic() for response in responses}

    def grew(self, response_id: int, text: str, num_tokens: int) -> None:
        faults.reached("generate:streaming")  # a test's kill or pause, mid-generation
        now = time.monotonic()
        self.finished_at[response_id] = now
        self._unwritten[response_id] = (text, num_tokens)
        # The page shows each side as soon as it has text, not one side an interval later.
        if response_id in self._shown and now - self._last_write < STREAM_INTERVAL:
            return
        if self._lease.lost.is_set():
            raise _LeaseLost
        for pk, (latest, count) in self._unwritten.items():
            Response.objects.filter(pk=pk).update(text=latest, num_tokens=count)
        self._shown.update(self._unwritten)
        self._unwritten.clear()
        self._last_write = now


def _messages(comparison: Comparison) -> list[Message]:
    turns = comparison.turn.dialogue.turns.filter(index__lte=comparison.turn.index)
    messages = []
    for turn in turns:
        messages.append(Message("user", turn.prompt))
        if turn.index < comparison.turn.index:
            messages.append(Message("assistant", turn.reply))
    return messages
