"""A batch's statistics for the admin, computed by the database.

Every figure is an aggregate or an annotation: no query here returns more rows than there are
annotators, days, strengths, skip reasons or patterns of labels on an item, so the page costs
the same for ten labels or a hundred thousand. Everything runs on SQLite and PostgreSQL alike
(medians through window functions, which both have, rather than PostgreSQL's percentile_cont).

The quality figures (agreement, gold accuracy, the win rate) read each annotator's current
label of an item: a label sent back to its annotator (annotation.reviews) is left out, so an
item is never counted twice for one annotator. Rejected labels count: what an annotator did is
what their figures describe, and the review outcomes are reported beside them.

Agreement, beyond the raw share of agreeing pairs:

- Krippendorff's α, ordinal, on the signed strength: the chosen side and the strength as one of
  eight ordered levels from "a significantly better" to "b significantly better" (in the
  stored a/b sides, so the left/right shuffle plays no part). The database counts each item's
  labels per level and groups the items by that pattern; α is computed from the patterns
  (annotation.agreement). Per annotator: α over the items they labelled (all labels of them).
- Fleiss' κ per batch and Cohen's κ per annotator on the choice (a or b). An annotator's κ
  takes them as one rater and the others on the same items as the second: every pair of their
  label and another annotator's on one item is one rating of the confusion matrix.

Gold items (Comparison.gold_choice): an annotator's accuracy is the share of their gold labels
choosing the expected side (and giving the expected safety label where one is set); below
settings.ANNOTATION_GOLD_FLOOR their labels are flagged.

The win rate of model_a against model_b corrects for position bias by averaging its win rate
when shown on the left and when shown on the right: a pull towards one side adds as much to
one placement as it takes from the other, and the comparisons' sides are drawn at random, so
the average is what an annotator without the bias would give. Undefined until both placements
have labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, F, IntegerField, Max, Q, QuerySet, Sum, Value, Window
from django.db.models.functions import RowNumber, TruncDate

from annotation.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from annotation.models import (
    Batch,
    Comparison,
    Dialogue,
    Label,
    Response,
    ReviewStatus,
    Safety,
    Side,
    Skip,
    Strength,
    Turn,
)
from rlhf.models import ModelVersion

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
    # Reviews: the labels whose latest review accepted, rejected or sent them back.
    accepted: int
    rejected: int
    sent_back: int
    # Gold items: labels of them, how many gave the expected answer, and whether the share is
    # below settings.ANNOTATION_GOLD_FLOOR (None and False without gold labels).
    gold_labels: int
    gold_correct: int
    gold_accuracy: float | None
    below_gold_floor: bool
    # Cohen's κ on the choice against the others on the same items; α over their items.
    kappa: float | None
    alpha: float | None


@dataclass(frozen=True)
class WinRate:
    """model_a's human win rate against model_b, by where model_a was shown."""

    model_a: str
    model_b: str
    a_left: int  # labels of comparisons showing model_a's response on the left
    a_left_wins: int
    a_right: int
    a_right_wins: int
    raw: float | None  # every label alike
    corrected: float | None  # the mean of the two placements' win rates


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
    alpha: float | None  # Krippendorff's α, ordinal, on the signed strength
    fleiss_kappa: float | None  # on the choice
    gold_items: int
    gold_floor: float
    flagged: list[str]  # annotators below the gold floor
    win_rate: WinRate
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


# The signed strength's eight levels: 0 "a significantly better" ... 3 "a negligibly better",
# 4 "b negligibly better" ... 7 "b significantly better".
SIGNED_LEVELS = [(Side.A, s) for s in Strength.values] + [
    (Side.B, s) for s in reversed(Strength.values)
]
_LEVEL_COLUMNS = [f"level_{i}" for i in range(len(SIGNED_LEVELS))]
_CHOOSING_A = slice(0, len(Strength.values))
_CHOOSING_B = slice(len(Strength.values), None)


def current_labels(batch: Batch) -> QuerySet[Label]:
    """The batch's labels that are each annotator's current one of an item (not sent back)."""
    return Label.objects.filter(comparison__batch=batch).exclude(
        review_status=ReviewStatus.SENT_BACK
    )


def _level_patterns(batch: Batch, *, per_annotator: bool) -> dict[object, np.ndarray]:
    """Items with two labels or more as an items × levels tally ({None: tally}, or per
    annotator the tally of the items they labelled). The database counts each item's labels
    per level and returns each distinct pattern once with its number of items."""
    per_item = (
        current_labels(batch)
        .order_by()
        .values(item=F("comparison_id"))
        .annotate(
            _n=Count("pk"),
            **{
                column: Count("pk", filter=Q(chosen=side, strength=strength))
                for column, (side, strength) in zip(_LEVEL_COLUMNS, SIGNED_LEVELS, strict=True)
            },
        )
        .filter(_n__gte=2)
    )
    inner, params = per_item.query.sql_with_params()
    levels = ", ".join(f"item.{column}" for column in _LEVEL_COLUMNS)
    if per_annotator:
        mine = (
            current_labels(batch).order_by().values(who=F("annotator_id"), item=F("comparison_id"))
        )
        mine_sql, mine_params = mine.query.sql_with_params()
        sql = (
            f"SELECT mine.who, {levels}, COUNT(*) FROM ({mine_sql}) mine"
            f" JOIN ({inner}) item ON item.item = mine.item"
            f" GROUP BY mine.who, {levels}"
        )
        params = (*mine_params, *params)
    else:
        sql = f"SELECT NULL, {levels}, COUNT(*) FROM ({inner}) item GROUP BY {levels}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    patterns: dict[object, list[tuple]] = defaultdict(list)
    for key, *pattern, items in rows:
        patterns[key].append((pattern, items))
    return {
        key: np.repeat(
            np.array([pattern for pattern, _ in rows], dtype=np.int64),
            [items for _, items in rows],
            axis=0,
        )
        for key, rows in patterns.items()
    }


def _by_choice(levels: np.ndarray) -> np.ndarray:
    """An items × levels tally as items × (a, b)."""
    return np.stack(
        [levels[:, _CHOOSING_A].sum(axis=1), levels[:, _CHOOSING_B].sum(axis=1)], axis=1
    )


# Every pair of one annotator's current label and another's on the same item, counted by the
# two choices (the confusion matrices of Cohen's κ per annotator). Hand-written: a self-join
# the ORM would express only through a subquery per label.
_PAIRS_SQL = f"""
SELECT mine.annotator_id, mine.chosen, other.chosen, COUNT(*)
FROM annotation_label mine
JOIN annotation_comparison item ON item.id = mine.comparison_id
JOIN annotation_label other ON other.comparison_id = mine.comparison_id
    AND other.annotator_id <> mine.annotator_id
WHERE item.batch_id = %s
  AND mine.review_status <> '{ReviewStatus.SENT_BACK.value}'
  AND other.review_status <> '{ReviewStatus.SENT_BACK.value}'
GROUP BY mine.annotator_id, mine.chosen, other.chosen
"""


def _kappas(batch: Batch) -> dict[int, float | None]:
    confusion: dict[int, np.ndarray] = defaultdict(lambda: np.zeros((2, 2)))
    index = {Side.A.value: 0, Side.B.value: 1}
    with connection.cursor() as cursor:
        cursor.execute(_PAIRS_SQL, [batch.pk])
        for annotator, mine, other, count in cursor.fetchall():
            confusion[annotator][index[mine], index[other]] += count
    return {annotator: cohen_kappa(table) for annotator, table in confusion.items()}


def _win_rate(batch: Batch, counts: dict[str, int]) -> WinRate:
    names = dict(
        ModelVersion.objects.filter(pk__in=[batch.model_a_id, batch.model_b_id]).values_list(
            "pk", "name"
        )
    )
    left, right = (
        _share(counts["a_left_wins"], counts["a_left"]),
        _share(counts["a_right_wins"], counts["a_right"]),
    )
    return WinRate(
        model_a=f"{names[batch.model_a_id]} (T {batch.temperature_a:g})",
        model_b=f"{names[batch.model_b_id]} (T {batch.temperature_b:g})",
        a_left=counts["a_left"],
        a_left_wins=counts["a_left_wins"],
        a_right=counts["a_right"],
        a_right_wins=counts["a_right_wins"],
        raw=_share(
            counts["a_left_wins"] + counts["a_right_wins"], counts["a_left"] + counts["a_right"]
        ),
        corrected=None if left is None or right is None else (left + right) / 2,
    )


def batch_statistics(batch: Batch) -> BatchStatistics:
    labels = Label.objects.filter(comparison__batch=batch)
    current = ~Q(review_status=ReviewStatus.SENT_BACK)
    gold = current & ~Q(comparison__gold_choice="")
    gold_correct = gold & Q(
        Q(comparison__gold_safety="") | Q(comparison__gold_safety=F("safety")),
        comparison__gold_choice=F("chosen"),
    )

    # Totals, strengths, safety bins and position bias in one pass over the labels.
    shown_left = Q(chosen=F("comparison__left"))
    totals = labels.aggregate(
        labels=Count("pk"),
        left=Count("pk", filter=shown_left),
        heldout=Count("pk", filter=Q(comparison__heldout=True)),
        **{f"strength_{s}": Count("pk", filter=Q(strength=s)) for s in Strength.values},
        **{f"safety_{s}": Count("pk", filter=Q(safety=s)) for s in Safety.values},
        a_left=Count("pk", filter=current & Q(comparison__left=Side.A)),
        a_left_wins=Count("pk", filter=current & Q(comparison__left=Side.A, chosen=Side.A)),
        a_right=Count("pk", filter=current & Q(comparison__left=Side.B)),
        a_right_wins=Count("pk", filter=current & Q(comparison__left=Side.B, chosen=Side.A)),
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
            accepted=Count("pk", filter=Q(review_status=ReviewStatus.ACCEPTED)),
            rejected=Count("pk", filter=Q(review_status=ReviewStatus.REJECTED)),
            sent_back=Count("pk", filter=Q(review_status=ReviewStatus.SENT_BACK)),
            gold=Count("pk", filter=gold),
            gold_correct=Count("pk", filter=gold_correct),
        )
        .order_by("-count", "username")
    )
    annotator_medians = _medians(labels, "annotator")
    batch_median = _medians(labels).get(None)
    kappas = _kappas(batch)
    annotator_levels = _level_patterns(batch, per_annotator=True)
    floor = settings.ANNOTATION_GOLD_FLOOR
    annotators = []
    for row in per_annotator:
        accuracy = _share(row["gold_correct"], row["gold"])
        levels = annotator_levels.get(row["annotator"])
        annotators.append(
            AnnotatorStatistics(
                username=row["username"],
                labels=row["count"],
                hours=(row["time_ms"] or 0) / MS_PER_HOUR,
                labels_per_hour=_share(row["count"], (row["time_ms"] or 0) / MS_PER_HOUR),
                median_ms=annotator_medians.get(row["annotator"]),
                left_share=_share(row["left"], row["count"]),
                accepted=row["accepted"],
                rejected=row["rejected"],
                sent_back=row["sent_back"],
                gold_labels=row["gold"],
                gold_correct=row["gold_correct"],
                gold_accuracy=accuracy,
                below_gold_floor=accuracy is not None and accuracy < floor,
                kappa=kappas.get(row["annotator"]),
                alpha=None if levels is None else krippendorff_alpha(levels, "ordinal"),
            )
        )
    levels = _level_patterns(batch, per_annotator=False).get(
        None, np.zeros((0, len(SIGNED_LEVELS)))
    )

    # An item with n labels, k of them choosing side a, has n(n-1)/2 pairs of annotators, of
    # which k(k-1)/2 + (n-k)(n-k-1)/2 agree (the halves cancel in the share).
    overlap = (
        Comparison.objects.filter(batch=batch)
        .annotate(
            n=Count("labels", filter=~Q(labels__review_status=ReviewStatus.SENT_BACK)),
            k=Count(
                "labels",
                filter=Q(labels__chosen=Side.A) & ~Q(labels__review_status=ReviewStatus.SENT_BACK),
            ),
        )
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
        gold=Count("pk", filter=~Q(gold_choice="")),
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
        alpha=krippendorff_alpha(levels, "ordinal"),
        fleiss_kappa=fleiss_kappa(_by_choice(levels)),
        gold_items=comparisons["gold"],
        gold_floor=floor,
        flagged=[a.username for a in annotators if a.below_gold_floor],
        win_rate=_win_rate(batch, totals),
        labels_per_day=per_day,
        comparisons=comparisons["total"],
        heldout=comparisons["heldout"],
        ready=comparisons["ready"],
        failed=comparisons["failed"],
        skips=skip_total,
        skips_by_reason=_bins(Skip.Reason.choices, skips, skip_total),
    )
