"""A batch's statistics for the admin, computed by the database.

Every figure is an aggregate or an annotation: no query here returns more rows than there are
annotators, days, strengths or skip reasons, so the page costs the same for ten labels or a
hundred thousand. Everything runs on SQLite and PostgreSQL alike (medians through window
functions, which both have, rather than PostgreSQL's percentile_cont).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db.models import Avg, Count, F, IntegerField, Max, Q, QuerySet, Sum, Value, Window
from django.db.models.functions import RowNumber, TruncDate

from annotation.models import (
    Batch,
    Comparison,
    Dialogue,
    Label,
    Response,
    Safety,
    Side,
    Skip,
    Strength,
    Turn,
)

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class Bin:
    """One bar of a histogram: a choice's stored value, its label, and how many."""

    key: str
    label: str
    count: int
    share: float | None  # of the histogram's total; None when the total is 0


@dataclass(frozen=True)
class AnnotatorStatistics:
    username: str
    labels: int
    hours: float  # time spent labelling (the sum of the labels' time_spent_ms)
    labels_per_hour: float | None
    median_ms: float | None
    # Share of the annotator's labels choosing the response shown on the left: 0.5 is no bias.
    left_share: float | None


@dataclass(frozen=True)
class BatchStatistics:
    labels: int
    per_strength: list[Bin]
    per_safety: list[Bin]
    unsure_share: float | None  # labels saying "negligibly better / unsure"
    heldout_labels: int
    prompt_tokens_mean: float | None
    response_tokens_mean: float | None  # over the responses of ready comparisons
    dialogues: int
    turns_per_dialogue_mean: float | None
    turns_per_dialogue_max: int | None
    median_ms: float | None  # time per label over the batch
    left_share: float | None  # position bias over the batch
    annotators: list[AnnotatorStatistics]
    # Agreement on items labelled by two annotators or more: of all pairs of annotators on the
    # same item, the share that chose the same response.
    overlap_items: int
    overlap_pairs: int
    agreement: float | None
    labels_per_day: list[tuple[date, int]]
    comparisons: int
    heldout: int  # comparisons in the held-out test set
    ready: int
    failed: int  # generations that failed
    skips: int
    skips_by_reason: list[Bin]


def _share(part: float | None, whole: float | None) -> float | None:
    return None if not whole else (part or 0) / whole


def _bins(choices, counts: dict[str, int], total: int) -> list[Bin]:
    return [
        Bin(key, label, counts.get(key, 0), _share(counts.get(key, 0), total))
        for key, label in choices
    ]


def _medians(labels: QuerySet[Label], partition: str | None = None) -> dict[object, float]:
    """Median time_spent_ms per value of the field `partition` ({None: median} without one).

    Each label is numbered within its partition in time order; only the one or two middle rows
    (2·rank between count and count + 2) come back from the database, and their mean is the
    median.
    """
    over = {"partition_by": [F(partition)]} if partition else {}
    middle = (
        labels.annotate(
            _rank=Window(RowNumber(), order_by=[F("time_spent_ms").asc(), F("pk").asc()], **over),
            _count=Window(Count("pk"), **over),
        )
        .annotate(_twice=F("_rank") * 2)
        .filter(_twice__gte=F("_count"), _twice__lte=F("_count") + 2)
        .annotate(_key=F(partition) if partition else Value(None, IntegerField()))
        .values_list("_key", "time_spent_ms")
    )
    grouped: dict[object, list[int]] = defaultdict(list)
    for key, value in middle:
        grouped[key].append(value)
    return {key: sum(values) / len(values) for key, values in grouped.items()}


def batch_statistics(batch: Batch) -> BatchStatistics:
    labels = Label.objects.filter(comparison__batch=batch)

    # Totals, strengths, safety bins and position bias in one pass over the labels.
    shown_left = Q(chosen=F("comparison__left"))
    totals = labels.aggregate(
        labels=Count("pk"),
        left=Count("pk", filter=shown_left),
        heldout=Count("pk", filter=Q(comparison__heldout=True)),
        **{f"strength_{s}": Count("pk", filter=Q(strength=s)) for s in Strength.values},
        **{f"safety_{s}": Count("pk", filter=Q(safety=s)) for s in Safety.values},
    )
    total = totals["labels"]
    per_strength = _bins(
        Strength.choices, {s: totals[f"strength_{s}"] for s in Strength.values}, total
    )
    per_safety = _bins(Safety.choices, {s: totals[f"safety_{s}"] for s in Safety.values}, total)

    prompt_tokens = Turn.objects.filter(dialogue__batch=batch).aggregate(mean=Avg("prompt_tokens"))[
        "mean"
    ]
    response_tokens = Response.objects.filter(
        comparison__batch=batch, comparison__status=Comparison.Status.READY
    ).aggregate(mean=Avg("num_tokens"))["mean"]
    turns = (
        Dialogue.objects.filter(batch=batch)
        .annotate(turn_count=Count("turns"))
        .aggregate(dialogues=Count("pk"), mean=Avg("turn_count"), max=Max("turn_count"))
    )

    per_annotator = list(
        labels.values("annotator")
        .annotate(
            username=F("annotator__username"),
            count=Count("pk"),
            time_ms=Sum("time_spent_ms"),
            left=Count("pk", filter=shown_left),
        )
        .order_by("-count", "username")
    )
    annotator_medians = _medians(labels, "annotator")
    batch_median = _medians(labels).get(None)
    annotators = [
        AnnotatorStatistics(
            username=row["username"],
            labels=row["count"],
            hours=(row["time_ms"] or 0) / MS_PER_HOUR,
            labels_per_hour=_share(row["count"], (row["time_ms"] or 0) / MS_PER_HOUR),
            median_ms=annotator_medians.get(row["annotator"]),
            left_share=_share(row["left"], row["count"]),
        )
        for row in per_annotator
    ]

    # An item with n labels, k of them choosing side a, has n(n-1)/2 pairs of annotators, of
    # which k(k-1)/2 + (n-k)(n-k-1)/2 agree (the halves cancel in the share).
    overlap = (
        Comparison.objects.filter(batch=batch)
        .annotate(n=Count("labels"), k=Count("labels", filter=Q(labels__chosen=Side.A)))
        .filter(n__gte=2)
        .aggregate(
            items=Count("pk"),
            pairs=Sum(F("n") * (F("n") - 1)),
            agreeing=Sum(F("k") * (F("k") - 1) + (F("n") - F("k")) * (F("n") - F("k") - 1)),
        )
    )
    overlap_pairs = (overlap["pairs"] or 0) // 2

    per_day = list(
        labels.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(count=Count("pk"))
        .order_by("day")
        .values_list("day", "count")
    )

    comparisons = Comparison.objects.filter(batch=batch).aggregate(
        total=Count("pk"),
        heldout=Count("pk", filter=Q(heldout=True)),
        ready=Count("pk", filter=Q(status=Comparison.Status.READY)),
        failed=Count("pk", filter=Q(status=Comparison.Status.FAILED)),
    )
    skips = dict(
        Skip.objects.filter(comparison__batch=batch)
        .values("reason")
        .annotate(count=Count("pk"))
        .order_by()
        .values_list("reason", "count")
    )
    skip_total = sum(skips.values())

    return BatchStatistics(
        labels=total,
        per_strength=per_strength,
        per_safety=per_safety,
        unsure_share=_share(totals[f"strength_{Strength.NEGLIGIBLY_BETTER}"], total),
        heldout_labels=totals["heldout"],
        prompt_tokens_mean=prompt_tokens,
        response_tokens_mean=response_tokens,
        dialogues=turns["dialogues"],
        turns_per_dialogue_mean=turns["mean"],
        turns_per_dialogue_max=turns["max"],
        median_ms=batch_median,
        left_share=_share(totals["left"], total),
        annotators=annotators,
        overlap_items=overlap["items"],
        overlap_pairs=overlap_pairs,
        agreement=_share(overlap["agreeing"], overlap["pairs"]),
        labels_per_day=per_day,
        comparisons=comparisons["total"],
        heldout=comparisons["heldout"],
        ready=comparisons["ready"],
        failed=comparisons["failed"],
        skips=skip_total,
        skips_by_reason=_bins(Skip.Reason.choices, skips, skip_total),
    )
