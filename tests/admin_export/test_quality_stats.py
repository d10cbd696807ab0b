"""The quality figures of batch_statistics on the constructed batch (conftest.py), worked by
hand: chance-corrected agreement, gold accuracy and the floor, the position-corrected win
rate, review outcomes; and what a label sent back changes. Both backends.

The labels on the signed strength (0 "a significantly better" ... 7 "b significantly better"):
c1: alice 0, bob 6; c2: alice 1 (alone: not pairable); c3: alice 4, bob 5, carol 3.
"""

from __future__ import annotations

import pytest

from annotation.models import Comparison
from annotation.reviews import ReviewInput, review_label
from annotation.stats import batch_statistics


def by_name(stats):
    return {a.username: a for a in stats.annotators}


def test_krippendorffs_ordinal_alpha_per_batch_and_annotator(labelled):
    stats = batch_statistics(labelled.batch)
    # Coincidences: c1 (0,6) twice with weight 1; c3 the six ordered pairs of 3, 4, 5 with
    # weight 1/2. Ordinal δ² from the pooled values 0, 3, 4, 5, 6 (one each): δ²(0,6) = 16,
    # δ²(3,4) = δ²(4,5) = 1, δ²(3,5) = 4, so D_o = (32 + 1 + 4 + 1)/5 = 7.6; over all pairs of
    # values D_e = 2 · 50 / (5 · 4) = 5; α = 1 - 7.6/5.
    assert stats.alpha == pytest.approx(-0.52)
    annotators = by_name(stats)
    # alice and bob labelled c1 and c3, the batch's pairable items; carol c3 alone, where
    # D_o = D_e = 2.
    assert annotators["alice"].alpha == pytest.approx(-0.52)
    assert annotators["bob"].alpha == pytest.approx(-0.52)
    assert annotators["carol"].alpha == pytest.approx(0.0)


def test_fleiss_and_cohens_kappa_on_the_choice(labelled):
    stats = batch_statistics(labelled.batch)
    # c1: a 1, b 1 -> P = 0; c3: a 1, b 2 -> P = 1/3; P̄ = 1/6; p_a = 2/5, P_e = 0.52.
    assert stats.fleiss_kappa == pytest.approx((1 / 6 - 0.52) / (1 - 0.52))
    annotators = by_name(stats)
    # alice against the others: (a, b) on c1, (b, b) and (b, a) on c3: p_o = 1/3, p_e = 5/9.
    assert annotators["alice"].kappa == pytest.approx(-0.5)
    # bob always chose b: p_e = 1/3 = p_o. carol disagreed with both, who both chose b: p_e 0.
    assert annotators["bob"].kappa == pytest.approx(0.0)
    assert annotators["carol"].kappa == pytest.approx(0.0)
    # Beside the raw agreement, unchanged.
    assert stats.agreement == pytest.approx(1 / 4)


def test_gold_accuracy_and_the_floor(labelled, settings):
    c1, _, c3, _ = labelled.comparisons
    Comparison.objects.filter(pk=c1.pk).update(gold_choice="a")
    Comparison.objects.filter(pk=c3.pk).update(
        gold_choice="b", gold_safety="chosen_safe_other_unsafe"
    )
    stats = batch_statistics(labelled.batch)
    annotators = by_name(stats)
    rows = {
        name: (a.gold_labels, a.gold_correct, a.gold_accuracy, a.below_gold_floor)
        for name, a in annotators.items()
    }
    # alice: a on c1, b with the expected safety on c3. bob: b on c1. carol: a on c3.
    assert rows == {
        "alice": (2, 2, 1.0, False),
        "bob": (2, 1, 0.5, True),
        "carol": (1, 0, 0.0, True),
    }
    assert (stats.gold_items, stats.gold_floor, stats.flagged) == (2, 0.8, ["bob", "carol"])
    # Where a safety label is expected, a label giving another is wrong: alice's c3 now is.
    Comparison.objects.filter(pk=c3.pk).update(gold_safety="both_unsafe")
    assert by_name(batch_statistics(labelled.batch))["alice"].gold_correct == 1
    settings.ANNOTATION_GOLD_FLOOR = 0.5
    assert batch_statistics(labelled.batch).flagged == ["bob", "carol"]
    Comparison.objects.filter(pk=c3.pk).update(gold_safety="")
    assert batch_statistics(labelled.batch).flagged == ["carol"]  # bob at 0.5 is not below


def test_the_win_rate_is_averaged_over_the_two_placements(labelled):
    win = batch_statistics(labelled.batch).win_rate
    assert (win.model_a, win.model_b) == ("policy-new (T 0.7)", "policy-old (T 1)")
    # model_a shown left on c1 and c3: 5 labels, 2 for a (alice c1, carol c3); shown right on
    # c2: alice chose a. Raw 3/6; corrected (2/5 + 1/1) / 2.
    assert (win.a_left, win.a_left_wins, win.a_right, win.a_right_wins) == (5, 2, 1, 1)
    assert win.raw == pytest.approx(0.5)
    assert win.corrected == pytest.approx(0.7)


def test_review_outcomes_per_annotator_and_a_label_sent_back(labelled, make_user):
    rita = make_user("rita", "reviewer")
    review_label(reviewer=rita, label_id=labelled.labels.alice_c1.pk, data=ReviewInput("accepted"))
    review_label(
        reviewer=rita, label_id=labelled.labels.bob_c1.pk, data=ReviewInput("rejected", "careless")
    )
    review_label(
        reviewer=rita,
        label_id=labelled.labels.carol_c3.pk,
        data=ReviewInput("sent_back", "wrong_choice"),
    )
    stats = batch_statistics(labelled.batch)
    annotators = by_name(stats)
    assert [(a.accepted, a.rejected, a.sent_back) for a in annotators.values()] == [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
    ]
    assert stats.labels == 6  # every label given is counted as work
    # carol's label is out of the quality figures until she labels c3 again: c3 is b, b.
    assert (stats.overlap_pairs, stats.agreement) == (2, pytest.approx(1 / 2))
    # c1 (1, 1) -> P = 0, c3 (0, 2) -> P = 1; P̄ = 1/2; p_a = 1/4, P_e = 10/16.
    assert stats.fleiss_kappa == pytest.approx((0.5 - 10 / 16) / (1 - 10 / 16))
    assert annotators["carol"].kappa is None and annotators["carol"].alpha is None
    assert (stats.win_rate.a_left, stats.win_rate.a_left_wins) == (4, 1)


def test_an_empty_batch_has_no_agreement_and_no_win_rate(versions):
    from annotation.models import Batch

    empty = Batch.objects.create(name="2026-w50", model_a=versions[0], model_b=versions[1])
    stats = batch_statistics(empty)
    assert (stats.alpha, stats.fleiss_kappa, stats.gold_items, stats.flagged) == (
        None,
        None,
        0,
        [],
    )
    assert (stats.win_rate.raw, stats.win_rate.corrected) == (None, None)
