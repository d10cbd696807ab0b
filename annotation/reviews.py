"""Reviewing labels: a reviewer (the `reviewer` role, or staff) accepts a label, rejects it, or
sends it back to its annotator.

- Every judgement is a new Review row (who, when, the outcome, the reason): the history is
  never rewritten. The label's `review_status` is the latest outcome, written in the same
  transaction, so the export and the statistics filter on one column.
- A rejected label is left out of the training export (annotation.export.trusted_labels) and
  kept, with its reviews, in the raw export. A later review may accept it again.
- A label sent back is left out of training too, and its annotator labels the item again: their
  place on it is locked to them with no expiry (as a writer's own prompt is), the item is listed
  on their "sent back" page with the reviewer's reason, and their new label replaces the old
  one, which stays as a record (the one-label rule counts only labels not sent back). A label
  can be sent back only while its batch is open, since labelling needs an open batch; after
  that a reviewer accepts or rejects it. A label sent back is not reviewed again: its
  replacement is.
- Nobody reviews their own label.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from annotation.models import (
    Assignment,
    Batch,
    Label,
    Response,
    Review,
    ReviewStatus,
    Turn,
)
from annotation.services import AnnotationError, Conflict, NotFound, check_text

OUTCOMES = [value for value in ReviewStatus.values if value != ReviewStatus.UNREVIEWED]
MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class ReviewInput:
    outcome: str  # accepted, rejected or sent_back
    reason: str = ""  # a Review.Reason; required unless accepted
    note: str = ""

    def validate(self) -> None:
        if self.outcome not in OUTCOMES:
            raise AnnotationError(f"'outcome' must be one of {', '.join(OUTCOMES)}")
        if self.reason and self.reason not in Review.Reason.values:
            raise AnnotationError(f"'reason' must be one of {', '.join(Review.Reason.values)}")
        if self.outcome != ReviewStatus.ACCEPTED and not self.reason:
            raise AnnotationError("a label rejected or sent back needs a 'reason'")
        if self.reason == Review.Reason.OTHER and not self.note.strip():
            raise AnnotationError("the reason 'other' needs a 'note' saying why")
        if len(self.note) > MAX_NOTE_CHARS:
            raise AnnotationError(f"the note is over {MAX_NOTE_CHARS} characters")


def review_label(*, reviewer: AbstractBaseUser, label_id: int, data: ReviewInput) -> Review:
    """Record `reviewer`'s judgement of a label and make it the label's status (rules above).

    The label row is locked first, so two reviews of one label are applied one after the other
    and the label's status is always the outcome of its latest review."""
    data.validate()
    with transaction.atomic():
        label = (
            Label.objects.select_for_update(of=("self",))
            .select_related("comparison__batch__model_a", "comparison__batch__model_b")
            .filter(pk=label_id)
            .first()
        )
        if label is None:
            raise NotFound(f"no label {label_id}")
        if label.annotator_id == reviewer.pk:
            raise Conflict("you cannot review your own label")
        if label.review_status == ReviewStatus.SENT_BACK:
            raise Conflict("this label was sent back to its annotator: review the one replacing it")
        if data.note:  # it goes into the raw export: the rule for every text that enters one
            check_text(batch=label.comparison.batch, field="the note", text=data.note)
        if data.outcome == ReviewStatus.SENT_BACK:
            _send_back(label)
        review = Review.objects.create(
            label=label,
            reviewer=reviewer,
            outcome=data.outcome,
            reason=data.reason,
            note=data.note.strip(),
        )
        Label.objects.filter(pk=label.pk).update(review_status=data.outcome)
    return review


def _send_back(label: Label) -> None:
    if label.comparison.batch.status != Batch.Status.OPEN:
        raise Conflict(
            "this label's batch is closed, so its annotator cannot label it again: accept or "
            "reject it"
        )
    # The place is locked to the annotator with no expiry: nobody else takes it, and their
    # next label of it is accepted (an imported dataset's labels had no place: one is made).
    Assignment.objects.update_or_create(
        comparison_id=label.comparison_id,
        annotator_id=label.annotator_id,
        defaults={"status": Assignment.Status.LOCKED, "locked_until": None},
    )


# --- reading ------------------------------------------------------------------------------------

REVIEW_PAGE = 20


def to_review(
    *,
    reviewer: AbstractBaseUser,
    batch: Batch | None = None,
    status: str = ReviewStatus.UNREVIEWED,
    limit: int = REVIEW_PAGE,
) -> list[Label]:
    """Labels with this review status for `reviewer` (never their own), oldest first, with their
    comparison's responses and earlier turns loaded."""
    labels = Label.objects.filter(review_status=status).exclude(annotator=reviewer)
    if batch is not None:
        labels = labels.filter(comparison__batch=batch)
    # What a reviewer sees of each label, in a fixed number of queries.
    page = list(
        labels.select_related("comparison__turn__dialogue", "comparison__batch", "annotator")
        .prefetch_related(
            Prefetch("comparison__responses", queryset=Response.objects.order_by("side")),
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer")),
        )
        .order_by("pk")[:limit]
    )
    _load_context(page)
    return page


def _load_context(labels: list[Label]) -> None:
    """Each label's earlier turns as chat messages (`label.context`), in one query."""
    later = {label.comparison.turn.dialogue_id for label in labels if label.comparison.turn.index}
    turns: dict[int, list[Turn]] = {}
    for turn in Turn.objects.filter(dialogue_id__in=later).order_by("dialogue_id", "index"):
        turns.setdefault(turn.dialogue_id, []).append(turn)
    for label in labels:
        turn = label.comparison.turn
        label.context = [
            message
            for earlier in turns.get(turn.dialogue_id, [])
            if earlier.index < turn.index
            for message in (
                {"role": "user", "content": earlier.prompt},
                {"role": "assistant", "content": earlier.reply},
            )
        ]


def sent_back(*, annotator: AbstractBaseUser) -> QuerySet[Label]:
    """The annotator's labels sent back to them that they have not labelled again yet (in open
    batches: only there can they), each with the latest review's reason and note."""
    latest = Review.objects.filter(label=OuterRef("pk")).order_by("-created_at", "-pk")
    relabelled = Label.objects.filter(annotator=annotator).exclude(
        review_status=ReviewStatus.SENT_BACK
    )
    return (
        Label.objects.filter(
            annotator=annotator,
            review_status=ReviewStatus.SENT_BACK,
            comparison__batch__status=Batch.Status.OPEN,
        )
        .exclude(comparison__in=relabelled.values("comparison"))
        .select_related("comparison__turn")
        .annotate(
            review_reason=Subquery(latest.values("reason")[:1]),
            review_note=Subquery(latest.values("note")[:1]),
        )
        .order_by("pk")
    )
