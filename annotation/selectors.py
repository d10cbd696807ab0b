"""Read-only views of annotation records for pages and the API."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from annotation.models import Assignment, Batch, Comparison, Dialogue, Label, Skip

# Hand-written SQL for the queue's hot path (every fetch): the ORM spent about 4 ms of CPU
# building the three queries this replaces, which made it most of a fetch's server time.
# The statuses are literals, not parameters, so that PostgreSQL's generic plan of the prepared
# statement still sees that the places it reads are not done and walks the `assignment_queue`
# partial index in comparison order, stopping after 32 rows instead of sorting the queue.
_OPEN, _LOCKED = Assignment.Status.OPEN.value, Assignment.Status.LOCKED.value

# The queue's rule, once (the claims, the queue and the annotator's count of it all use it):
# a place is claimable when it is free or its holder's lock has expired...
CLAIMABLE_SQL = (
    f"(annotation_assignment.status = '{_OPEN}' OR (annotation_assignment.status = '{_LOCKED}'"
    " AND annotation_assignment.locked_until <= %(now)s))"
)

# ...and it is in the annotator's queue when it is claimable, on a ready item of the open batch
# they hold no place on and did not skip.
_QUEUED_SQL = f"""
    FROM annotation_assignment
    JOIN annotation_comparison item ON item.id = annotation_assignment.comparison_id
    JOIN annotation_batch batch ON batch.id = item.batch_id
    WHERE batch.status = '{Batch.Status.OPEN.value}'
      AND item.status = '{Comparison.Status.READY.value}'"""

_IN_QUEUE_SQL = f"""
    {_QUEUED_SQL}
      AND {CLAIMABLE_SQL}
      AND NOT EXISTS (
        SELECT 1 FROM annotation_assignment mine
        WHERE mine.comparison_id = annotation_assignment.comparison_id
          AND mine.annotator_id = %(annotator)s
      )
      AND NOT EXISTS (
        SELECT 1 FROM annotation_skip skipped
        WHERE skipped.comparison_id = annotation_assignment.comparison_id
          AND skipped.annotator_id = %(annotator)s
      )"""

_QUEUE_PLACES_SQL = f"""
SELECT * FROM (
    SELECT annotation_assignment.id, annotation_assignment.comparison_id, 1 AS held
    {_QUEUED_SQL}
      AND annotation_assignment.annotator_id = %(annotator)s
      AND annotation_assignment.status = '{_LOCKED}'
      AND annotation_assignment.locked_until > %(now)s
    LIMIT 1
) held
UNION ALL
SELECT * FROM (
    SELECT annotation_assignment.id, annotation_assignment.comparison_id, 0 AS held
    {_IN_QUEUE_SQL}
    ORDER BY annotation_assignment.comparison_id, annotation_assignment.id
    LIMIT 32
) candidates
"""

_QUEUE_LENGTH_SQL = f"SELECT count(DISTINCT annotation_assignment.comparison_id) {_IN_QUEUE_SQL}"


def _run(sql: str, annotator_id: int, now: datetime) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            sql, {"annotator": annotator_id, "now": connection.ops.adapt_datetimefield_value(now)}
        )
        return cursor.fetchall()


def queue_places(annotator_id: int, now: datetime) -> tuple[int | None, list[tuple[int, int]]]:
    """What the open batch's queue offers an annotator, in one query: the comparison of the
    place they hold (a live lock), if any, and up to 32 (place, comparison) ids they may claim,
    oldest items first (ids grow with creation time)."""
    rows = _run(_QUEUE_PLACES_SQL, annotator_id, now)
    held = next((comparison_id for _, comparison_id, is_held in rows if is_held), None)
    return held, [(pk, comparison_id) for pk, comparison_id, is_held in rows if not is_held]


def queue_length(annotator_id: int, now: datetime) -> int:
    """How many items of the open batch's queue the annotator may still claim."""
    return _run(_QUEUE_LENGTH_SQL, annotator_id, now)[0][0]


def comparison_for(user, comparison_id: int) -> Comparison | None:
    """The comparison if `user` holds (or held) a place on it, or is staff."""
    visible = Comparison.objects.select_related("turn__dialogue", "batch").prefetch_related(
        "responses"
    )
    if not user.is_staff:
        visible = visible.filter(assignments__annotator=user)
    return visible.filter(pk=comparison_id).first()


def earlier_turns(comparison: Comparison) -> list[dict[str, str]]:
    """The dialogue before this comparison's prompt, as chat messages."""
    messages = []
    for turn in comparison.turn.dialogue.turns.filter(index__lt=comparison.turn.index):
        messages.append({"role": "user", "content": turn.prompt})
        messages.append({"role": "assistant", "content": turn.reply})
    return messages


def progress(user, batch: Batch) -> dict:
    """The annotator's own week: labels and skips in the open batch, and what is left to do."""
    labels = Label.objects.filter(annotator=user, comparison__batch=batch).aggregate(
        labels=Count("pk"), time_ms=Sum("time_spent_ms")
    )
    return {
        "batch": batch.name,
        "labels": labels["labels"],
        "minutes": round((labels["time_ms"] or 0) / 60_000, 1),
        "skips": Skip.objects.filter(annotator=user, comparison__batch=batch).count(),
        "dialogues": Dialogue.objects.filter(author=user, batch=batch).count(),
        "queue_open": queue_length(user.pk, timezone.now())
        if batch.status == Batch.Status.OPEN
        else 0,
    }
