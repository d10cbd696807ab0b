"""Read-only views of annotation records for pages and the API."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from annotation.models import Assignment, Batch, Comparison, Dialogue, Label, Skip


def queue(batch: Batch) -> QuerySet[Assignment]:
    """The places on the batch's items whose responses are ready. Only imported prompts' places
    are ever claimable: a writer's own place is locked with no expiry and removed if they skip
    it, so the queue needs no join to the dialogue (this query runs on every fetch)."""
    return Assignment.objects.filter(
        comparison__batch=batch, comparison__status=Comparison.Status.READY
    )


def claimable() -> Q:
    """A place anyone may take now: never taken, or its holder's lock has expired."""
    return Q(status=Assignment.Status.OPEN) | Q(
        status=Assignment.Status.LOCKED, locked_until__lte=timezone.now()
    )


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
        "queue_open": queue(batch)
        .filter(claimable())
        .exclude(comparison__assignments__annotator=user)
        .exclude(comparison__skips__annotator=user)
        .values("comparison")
        .distinct()
        .count(),
    }
