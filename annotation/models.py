"""Annotation records, in typed columns so statistics are computed by the database.

A Dialogue is a sequence of Turns; each Turn's prompt gets one Comparison: two Responses (sides
"a" and "b", from the batch's two model variants) shown in a random left/right order. Annotators
hold Assignments (one per annotator and item, locked for a while) and give Labels (one per
comparison and annotator, enforced by the database). Reviewers judge labels: every judgement is
a Review (append-only), and the label carries the latest outcome. A comparison an admin gave an
expected choice is a gold (attention) item, served like any other.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from rlhf.models import ModelVersion
from rlhf.train.data import GUIDELINES, SAFETY_WORDING, STRENGTH_WORDING


def _choices(name: str, wording: dict[str, str]) -> type[models.TextChoices]:
    """Model choices over values of the training-row contract (rlhf.train.data), each member
    named by its value in capitals (Strength.SLIGHTLY_BETTER)."""
    return models.TextChoices(
        name, [(value.upper(), (value, words)) for value, words in wording.items()]
    )


Guideline = _choices("Guideline", {guideline: guideline for guideline in GUIDELINES})
Strength = _choices("Strength", STRENGTH_WORDING)
Safety = _choices("Safety", SAFETY_WORDING)


class Side(models.TextChoices):
    A = "a", "a"
    B = "b", "b"


def other_side(side: str) -> str:
    return Side.B if side == Side.A else Side.A


class Batch(models.Model):
    """A week of collection, served by two model variants (two models, or one model at two
    temperatures: both are recorded on every response)."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        CLOSED = "closed", "closed"

    name = models.SlugField(max_length=50, unique=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    model_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    model_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    temperature_a = models.FloatField(default=0.7, validators=[MinValueValidator(0.0)])
    temperature_b = models.FloatField(default=1.0, validators=[MinValueValidator(0.0)])
    top_p = models.FloatField(
        default=0.9, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)]
    )
    max_new_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(1), MaxValueValidator(4096)]
    )
    # The held-out test set: this share of the batch's comparisons, at most heldout_max of them
    # (Llama 2 holds out 1,000 per batch).
    heldout_share = models.FloatField(
        default=0.1, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    heldout_max = models.PositiveIntegerField(default=1000)
    # Annotators per queued item; more than one measures agreement.
    overlap = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(10)]
    )
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="open"), name="one_open_batch"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Dialogue(models.Model):
    class Source(models.TextChoices):
        WRITTEN = "written", "written by an annotator"
        IMPORTED = "imported", "imported (queue)"

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="dialogues")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WRITTEN)
    guideline = models.CharField(max_length=12, choices=Guideline.choices)
    # An adversarial prompt meant to draw out unsafe behaviour (Llama 2's safety data).
    risky = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class Turn(models.Model):
    dialogue = models.ForeignKey(Dialogue, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    prompt = models.TextField()
    prompt_tokens = models.PositiveIntegerField()
    # The assistant message that continues the dialogue: the chosen (or edited) response once
    # the dialogue's author has labelled this turn.
    reply = models.TextField(blank=True)
    # A retried write with the same key returns this turn instead of writing another: the
    # request's Idempotency-Key (the API) or the form's key (the pages), scoped to its author
    # ("user-12:abc"); the fingerprint tells a retry from a different request under that key.
    request_key = models.CharField(max_length=300, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["dialogue", "index"]
        constraints = [
            models.UniqueConstraint(fields=["dialogue", "index"], name="one_turn_per_index"),
            models.UniqueConstraint(
                fields=["request_key"], condition=~Q(request_key=""), name="one_turn_per_key"
            ),
        ]


class Comparison(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "waiting for a worker"
        GENERATING = "generating", "generating"
        READY = "ready", "ready"
        FAILED = "failed", "failed"

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="comparison")
    # The turn's batch, kept here so statistics filter comparisons without two joins.
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="comparisons")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    left = models.CharField(max_length=1, choices=Side.choices, help_text="side shown on the left")
    heldout = models.BooleanField(default=False)
    # A gold (attention) item: the side an admin expects every annotator to choose, and
    # optionally the safety label; blank on ordinary items. Annotators are never told.
    gold_choice = models.CharField(
        max_length=1, choices=Side.choices, blank=True, help_text="expected choice (gold item)"
    )
    gold_safety = models.CharField(
        max_length=24, choices=Safety.choices, blank=True, help_text="expected safety label"
    )
    # The whole prompt as the model saw it (chat format, earlier turns, this prompt), in tokens.
    context_tokens = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    # The lease of the worker sampling it (annotation.generation, tandem.leases): who holds it,
    # when it last said so, and how many workers took it. A pending row's heartbeat_at is
    # when it was last sent to the queue.
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        # The reconciler's pass reads the few rows still waiting or sampling.
        indexes = [
            models.Index(
                fields=["status"],
                condition=Q(status__in=["pending", "generating"]),
                name="comparison_active",
            )
        ]

    def clean(self) -> None:
        if self.gold_safety and not self.gold_choice:
            raise ValidationError({"gold_choice": "a gold item needs the expected choice"})

    def response(self, side: str) -> Response:
        return next(r for r in self.responses.all() if r.side == side)

    @property
    def right(self) -> str:
        return other_side(self.left)


class Response(models.Model):
    class FinishReason(models.TextChoices):
        STOP = "stop", "stop token"
        LENGTH = "length", "max_new_tokens reached"
        CONTEXT = "context", "the model's context is full"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="responses")
    side = models.CharField(max_length=1, choices=Side.choices)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    temperature = models.FloatField()
    top_p = models.FloatField()
    max_new_tokens = models.PositiveIntegerField()
    seed = models.BigIntegerField()
    # text and num_tokens grow while the worker samples (the page shows them streaming); final
    # once finish_reason is set.
    text = models.TextField(blank=True)
    num_tokens = models.PositiveIntegerField(default=0)
    # Blank while sampling; then why the response ended (modelcore.sampling.Completion).
    finish_reason = models.CharField(max_length=8, blank=True, choices=FinishReason.choices)
    generation_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["comparison", "side"]
        constraints = [
            models.UniqueConstraint(fields=["comparison", "side"], name="one_response_per_side")
        ]


class Assignment(models.Model):
    """One annotator's place on an item. Claiming one is a conditional UPDATE (free, or its lock
    expired), so two annotators fetching at once never get the same place."""

    class Status(models.TextChoices):
        OPEN = "open", "open"
        LOCKED = "locked", "locked"
        DONE = "done", "done"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    locked_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"],
                condition=Q(annotator__isnull=False),
                name="one_assignment_per_annotator",
            )
        ]
        # The queue reads places that are not done, oldest item first; finished places (the
        # bulk of a batch by the end of its week) stay out of the index.
        indexes = [
            models.Index(
                fields=["comparison", "id"],
                condition=~Q(status="done"),
                name="assignment_queue",
            )
        ]


class ReviewStatus(models.TextChoices):
    UNREVIEWED = "unreviewed", "not reviewed"
    ACCEPTED = "accepted", "accepted"
    REJECTED = "rejected", "rejected (left out of training)"
    # Left out of training; the annotator labels the item again, and that label replaces it.
    SENT_BACK = "sent_back", "sent back to its annotator"


class Label(models.Model):
    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotation_labels"
    )
    chosen = models.CharField(max_length=1, choices=Side.choices)
    strength = models.CharField(max_length=20, choices=Strength.choices)
    safety = models.CharField(max_length=24, choices=Safety.choices)
    # Llama 3: an edited chosen response ranks edited > chosen > rejected.
    edited_response = models.TextField(blank=True)
    rationale = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField()
    # The outcome of the label's latest Review, kept here (in the review's transaction) so the
    # export and the statistics filter on a column instead of finding each label's last review.
    review_status = models.CharField(
        max_length=12, choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            # A label sent back stays as a record beside the one that replaces it.
            models.UniqueConstraint(
                fields=["comparison", "annotator"],
                condition=~Q(review_status="sent_back"),
                name="one_label_per_annotator",
            )
        ]

    @property
    def rejected(self) -> str:
        return other_side(self.chosen)


class Skip(models.Model):
    class Reason(models.TextChoices):
        UNCLEAR_PROMPT = "unclear_prompt", "the prompt is unclear"
        BROKEN_RESPONSE = "broken_response", "a response is broken or empty"
        NOT_QUALIFIED = "not_qualified", "outside my expertise"
        DISTRESSING = "distressing", "distressing content"
        OTHER = "other", "other"

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=Reason.choices)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "annotator"], name="one_skip_per_annotator"
            )
        ]


class Review(models.Model):
    """A reviewer's judgement of a label: who, when, what and why. Append-only: a later review
    of the same label is a new row (annotation.reviews), never an edit."""

    class Reason(models.TextChoices):
        WRONG_CHOICE = "wrong_choice", "the other response is better"
        WRONG_STRENGTH = "wrong_strength", "the strength is wrong"
        WRONG_SAFETY = "wrong_safety", "the safety label is wrong"
        BAD_EDIT = "bad_edit", "the edit is wrong or harmful"
        CARELESS = "careless", "labelled without reading"
        OTHER = "other", "other (the note says why)"

    label = models.ForeignKey(Label, on_delete=models.PROTECT, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    outcome = models.CharField(
        max_length=12,
        choices=[c for c in ReviewStatus.choices if c[0] != ReviewStatus.UNREVIEWED],
    )
    # Required unless the label is accepted.
    reason = models.CharField(max_length=16, choices=Reason.choices, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("a review is a record: add a new one instead of changing it")
        super().save(*args, **kwargs)
