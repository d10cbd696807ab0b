"""batch_statistics on the constructed batch of conftest.py, against numbers worked by hand.
Runs on both backends (SQLite by default, PostgreSQL with DATABASE_URL)."""

from __future__ import annotations

from datetime import date

import pytest

from annotation.models import Batch, Label, Strength
from annotation.stats import batch_statistics


def bins(histogram):
    return {b.key: b.count for b in histogram}


def test_label_counts_per_strength_and_safety(labelled):
    stats = batch_statistics(labelled.batch)
    assert stats.labels == 6
    assert bins(stats.per_strength) == {
        "significantly_better": 1,
        "better": 2,
        "slightly_better": 1,
        "negligibly_better": 2,
    }
    # In the order annotators see the choices, with shares of the total.
    assert [b.key for b in stats.per_strength] == list(Strength.values)
    assert stats.per_strength[1].share == pytest.approx(2 / 6)
    assert bins(stats.per_safety) == {
        "chosen_safe_other_unsafe": 2,
        "both_safe": 3,
        "both_unsafe": 1,
    }
    assert stats.unsure_share == pytest.approx(2 / 6)
    assert stats.heldout_labels == 1


def test_tokens_turns_and_comparisons(labelled):
    stats = batch_statistics(labelled.batch)
    assert stats.prompt_tokens_mean == pytest.approx((10 + 20 + 30 + 40) / 4)
    # The failed comparison's empty responses do not count.
    assert stats.response_tokens_mean == pytest.approx((10 + 20 + 30 + 40 + 50 + 60) / 6)
    assert stats.dialogues == 3
    assert stats.turns_per_dialogue_mean == pytest.approx(4 / 3)
    assert stats.turns_per_dialogue_max == 2
    assert (stats.comparisons, stats.heldout, stats.ready, stats.failed) == (4, 1, 3, 1)
    assert stats.skips == 3
    assert bins(stats.skips_by_reason) == {
        "unclear_prompt": 2,
        "broken_response": 0,
        "not_qualified": 0,
        "distressing": 0,
        "other": 1,
    }


def test_per_annotator_throughput_median_and_position_bias(labelled):
    stats = batch_statistics(labelled.batch)
    rows = {
        a.username: (a.labels, a.labels_per_hour, a.median_ms, a.left_share)
        for a in stats.annotators
    }
    assert [a.username for a in stats.annotators] == ["alice", "bob", "carol"]
    # alice: 3 labels in 90 s; times 10, 20, 60 s; left chosen on c1 only (c2 and c3 right).
    assert rows["alice"] == (3, pytest.approx(120.0), 20_000, pytest.approx(1 / 3))
    # bob: 2 labels in 80 s; the median of two is their mean; always the right side.
    assert rows["bob"] == (2, pytest.approx(90.0), 40_000, 0.0)
    assert rows["carol"] == (1, pytest.approx(90.0), 40_000, 1.0)
    assert stats.annotators[0].hours == pytest.approx(90 / 3600)
    # The batch: 10..60 s, six labels, median (30 + 40) / 2; two of six chose the left side.
    assert stats.median_ms == 35_000
    assert stats.left_share == pytest.approx(2 / 6)


def test_median_of_an_odd_count_is_the_middle_label(labelled):
    Label.objects.filter(pk=labelled.labels.carol_c3.pk).delete()
    stats = batch_statistics(labelled.batch)
    assert stats.median_ms == 30_000  # 10, 20, 30, 50, 60


def test_agreement_on_overlapping_items(labelled):
    stats = batch_statistics(labelled.batch)
    # c1: alice a, bob b -> 1 pair, 0 agree; c3: b, b, a -> 3 pairs, 1 agrees (alice, bob).
    assert stats.overlap_items == 2
    assert stats.overlap_pairs == 4
    assert stats.agreement == pytest.approx(1 / 4)


def test_labels_per_day(labelled):
    stats = batch_statistics(labelled.batch)
    assert stats.labels_per_day == [(date(2026, 11, 23), 3), (date(2026, 11, 24), 3)]


def test_other_batches_do_not_count(labelled, versions):
    other = Batch.objects.create(
        name="2026-w49", status="closed", model_a=versions[0], model_b=versions[1]
    )
    stats = batch_statistics(other)
    assert stats.labels == 0
    assert stats.comparisons == 0
    assert stats.annotators == []
    assert stats.median_ms is None
    assert stats.unsure_share is None
    assert stats.agreement is None
    assert stats.overlap_items == 0
    assert stats.labels_per_day == []
    assert stats.prompt_tokens_mean is None
    assert stats.turns_per_dialogue_max is None
    assert all(b.count == 0 and b.share is None for b in stats.per_strength)
