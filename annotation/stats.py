"""A batch's statistics for the admin, computed by the database.

Every figure is an aggregate or an annotation: no query here returns more rows than there are
annotators, days, strengths, skip reasons or patterns of labels on an item, so the page costs
the same for ten labels or a hundred thousand. Everything runs on SQLite and PostgreSQL alike,
except the medians: PostgreSQL's percentile_cont where it is there, window functions elsewhere.

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
from django.db.models import Avg, Count, F, Max, Q, QuerySet, Sum, Window
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


def _medians(batch: Batch) -> tuple[dict[int, float], float | None]:
    """Median time_spent_ms per annotator, and over all the batch's labels, in one query.

    PostgreSQL computes both in one ordered-set aggregate over two grouping sets, in half the
    time the window functions take at 100,000 labels (the batch page's largest query). SQLite
    has no median aggregate: there the window functions' ranks find the middle rows."""
    if connection.vendor == "postgresql":
        return _medians_by_percentile(batch)
    return _medians_by_rank(Label.objects.filter(comparison__batch=batch))


_MEDIANS_SQL = """
SELECT mine.annotator_id, PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY mine.time_spent_ms),
       GROUPING(mine.annotator_id)
FROM annotation_label mine JOIN annotation_comparison item ON item.id = mine.comparison_id
WHERE item.batch_id = %s
GROUP BY GROUPING SETS ((mine.annotator_id), ())
"""


def _medians_by_percentile(batch: Batch) -> tuple[dict[int, float], float | None]:
    with connection.cursor() as cursor:
        cursor.execute(_MEDIANS_SQL, [batch.pk])
        rows = cursor.fetchall()
    medians = {annotator: median for annotator, median, overall in rows if not overall}
    return medians, next((median for _, median, overall in rows if overall), None)


def _medians_by_rank(labels: QuerySet[Label]) -> tuple[dict[int, float], float | None]:
    """Each label is numbered in time order twice, within its annotator and among all; only the
    rows in the middle of either numbering (2·rank between count and count + 2: one or two per
    group) come back from the database, and the mean of a group's middle rows is its median.
    """
    in_order = [F("time_spent_ms").asc(), F("pk").asc()]
    by_annotator = {"partition_by": [F("annotator")]}
    middle = (
        labels.annotate(
            _rank=Window(RowNumber(), order_by=in_order, **by_annotator),
            _count=Window(Count("pk"), **by_annotator),
            _rank_all=Window(RowNumber(), order_by=in_order),
            _count_all=Window(Count("pk")),
        )
        .annotate(_twice=F("_rank") * 2, _twice_all=F("_rank_all") * 2)
        .filter(
            Q(_twice__gte=F("_count"), _twice__lte=F("_count") + 2)
            | Q(_twice_all__gte=F("_count_all"), _twice_all__lte=F("_count_all") + 2)
        )
        .values_list("annotator", "time_spent_ms", "_twice", "_count", "_twice_all", "_count_all")
    )
    per_annotator: dict[int, list[int]] = defaultdict(list)
    overall: list[int] = []
    for annotator, value, twice, count, twice_all, count_all in middle:
        if count <= twice <= count + 2:
            per_annotator[annotator].append(value)
        if count_all <= twice_all <= count_all + 2:
            overall.append(value)
    medians = {key: sum(values) / len(values) for key, values in per_annotator.items()}
    return medians, sum(overall) / len(overall) if overall else None


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


@dataclass(frozen=True)
class _Tallies:
    """The counts the agreement figures come from, over items with two current labels or
    more: items × levels tallies of the batch and of each annotator's items, and per
    annotator the confusion of their choice (row: a, b) with the others' on the same items."""

    batch: np.ndarray
    per_annotator: dict[int, np.ndarray]
    confusion: dict[int, np.ndarray]


# A label's signed level, in SQL, on the label row `mine`.
_LEVEL_SQL = (
    "CASE "
    + " ".join(
        f"WHEN mine.chosen = '{side}' AND mine.strength = '{strength}' THEN {level}"
        for level, (side, strength) in enumerate(SIGNED_LEVELS)
    )
    + " END"
)


def _tallies(batch: Batch) -> _Tallies:
    """One query: the database counts each item's labels per level, joins every current label
    to its item's counts and returns each distinct (annotator, their level, the item's
    pattern) once with its number of items (a few per annotator, whatever the labels).

    An item with n labels comes once for each of its n annotators, so the batch's number of
    items with a pattern is the sum over the annotators divided by n; and the others' labels
    on an item are its pattern less the annotator's own level."""
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
    # The item subquery is the batch's already: the labels join it without the comparisons.
    sql = (
        f"SELECT mine.annotator_id, {_LEVEL_SQL}, {levels}, COUNT(*) FROM annotation_label mine"
        f" JOIN ({inner}) item ON item.item = mine.comparison_id"
        f" WHERE mine.review_status <> %s GROUP BY mine.annotator_id, {_LEVEL_SQL}, {levels}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, (*params, ReviewStatus.SENT_BACK.value))
        rows = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, len(SIGNED_LEVELS) + 3)
    annotator, own, patterns, items = rows[:, 0], rows[:, 1], rows[:, 2:-1], rows[:, -1]
    unique, which = np.unique(patterns, axis=0, return_inverse=True)
    in_batch = np.bincount(which.ravel(), weights=items, minlength=len(unique))
    others = _by_choice(patterns - np.eye(len(SIGNED_LEVELS), dtype=np.int64)[own])
    mine = (own >= len(Strength.values)).astype(np.int64)  # 0: chose a, 1: chose b
    confusion, per_annotator = {}, {}
    for person in np.unique(annotator):
        theirs = annotator == person
        table = np.zeros((2, 2))
        np.add.at(table, mine[theirs], items[theirs, np.newaxis] * others[theirs])
        confusion[int(person)] = table
        per_annotator[int(person)] = np.repeat(patterns[theirs], items[theirs], axis=0)
    return _Tallies(
        batch=np.repeat(unique, (in_batch // unique.sum(axis=1)).astype(np.int64), axis=0),
        per_annotator=per_annotator,
        confusion=confusion,
    )


def _by_choice(levels: np.ndarray) -> np.ndarray:
    """An items × levels tally as items × (a, b)."""
    return np.stack(
        [levels[:, _CHOOSING_A].sum(axis=1), levels[:, _CHOOSING_B].sum(axis=1)], axis=1
    )


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

    # Per annotator, in one pass over the labels: their figures, and the batch's totals as the
    # sums of theirs (strengths, safety bins, position bias, the win rate's counts).
    shown_left = Q(chosen=F("comparison__left"))
    summed = {
        "count": Count("pk"),
        "left": Count("pk", filter=shown_left),
        "heldout": Count("pk", filter=Q(comparison__heldout=True)),
        **{f"strength_{s}": Count("pk", filter=Q(strength=s)) for s in Strength.values},
        **{f"safety_{s}": Count("pk", filter=Q(safety=s)) for s in Safety.values},
        "a_left": Count("pk", filter=current & Q(comparison__left=Side.A)),
        "a_left_wins": Count("pk", filter=current & Q(comparison__left=Side.A, chosen=Side.A)),
        "a_right": Count("pk", filter=current & Q(comparison__left=Side.B)),
        "a_right_wins": Count("pk", filter=current & Q(comparison__left=Side.B, chosen=Side.A)),
    }
    per_annotator = list(
        labels.values("annotator")
        .annotate(
            username=F("annotator__username"),
            time_ms=Sum("time_spent_ms"),
            accepted=Count("pk", filter=Q(review_status=ReviewStatus.ACCEPTED)),
            rejected=Count("pk", filter=Q(review_status=ReviewStatus.REJECTED)),
            sent_back=Count("pk", filter=Q(review_status=ReviewStatus.SENT_BACK)),
            gold=Count("pk", filter=gold),
            gold_correct=Count("pk", filter=gold_correct),
            **summed,
        )
        .order_by("-count", "username")
    )
    totals = {key: sum(row[key] for row in per_annotator) for key in summed}
    total = totals["count"]
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

    annotator_medians, batch_median = _medians(batch)
    tallies = _tallies(batch)
    levels = tallies.batch
    floor = settings.ANNOTATION_GOLD_FLOOR
    annotators = []
    for row in per_annotator:
        accuracy = _share(row["gold_correct"], row["gold"])
        theirs = tallies.per_annotator.get(row["annotator"])
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
                kappa=cohen_kappa(tallies.confusion.get(row["annotator"], np.zeros((2, 2)))),
                alpha=None if theirs is None else krippendorff_alpha(theirs, "ordinal"),
            )
        )

    # Raw agreement from the same tally: an item with n labels, k of them choosing side a, has
    # n(n-1)/2 pairs of annotators, of which k(k-1)/2 + (n-k)(n-k-1)/2 agree.
    n, k = levels.sum(axis=1), levels[:, _CHOOSING_A].sum(axis=1)
    overlap_pairs = int((n * (n - 1)).sum() // 2)
    agreeing = int((k * (k - 1) + (n - k) * (n - k - 1)).sum() // 2)

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
        overlap_items=len(levels),
        overlap_pairs=overlap_pairs,
        agreement=_share(agreeing, overlap_pairs),
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
