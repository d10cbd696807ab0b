"""Reviews of the constructed batch's labels (conftest.py): the rules, the append-only record,
what the exports keep, and a label sent back and labelled again."""

from __future__ import annotations

import pytest

from annotation import services
from annotation.export import raw_records, training_records, trl_records
from annotation.models import Assignment, Batch, Label, Review
from annotation.reviews import ReviewInput, review_label, sent_back

ACCEPT = ReviewInput("accepted")
REJECT = ReviewInput("rejected", "wrong_choice", "side b answers the question")
SEND_BACK = ReviewInput("sent_back", "wrong_strength")
AGAIN = services.LabelInput(chosen="left", strength="better", safety="both_safe", time_spent_ms=9)


@pytest.fixture
def reviewer(make_user):
    return make_user("rita", "reviewer")


def label_ids(records) -> set[int]:
    return {int(r["id"].rsplit("/l", 1)[1]) for r in records}


def test_every_review_is_recorded_and_the_latest_is_the_labels_status(labelled, reviewer):
    label = labelled.labels.bob_c3
    first = review_label(reviewer=reviewer, label_id=label.pk, data=REJECT)
    second = review_label(reviewer=reviewer, label_id=label.pk, data=ACCEPT)
    label.refresh_from_db()
    assert label.review_status == "accepted"
    assert [(r.reviewer.username, r.outcome, r.reason, r.note) for r in label.reviews.all()] == [
        ("rita", "rejected", "wrong_choice", "side b answers the question"),
        ("rita", "accepted", "", ""),
    ]
    assert first.created_at <= second.created_at
    first.note = "rewritten"
    with pytest.raises(ValueError, match="a review is a record"):
        first.save()


def test_a_rejected_label_leaves_training_and_stays_raw_with_its_review(labelled, reviewer):
    rejected = labelled.labels.alice_c1
    review_label(reviewer=reviewer, label_id=rejected.pk, data=REJECT)
    review_label(reviewer=reviewer, label_id=labelled.labels.bob_c1.pk, data=ACCEPT)
    assert label_ids(training_records()) == set(
        Label.objects.exclude(pk=rejected.pk).values_list("pk", flat=True)
    )
    assert rejected.pk not in label_ids(trl_records())
    raw = {r["label_id"]: r for r in raw_records() if r["record"] == "label"}
    assert len(raw) == 6
    assert raw[rejected.pk]["review_status"] == "rejected"
    [review] = raw[rejected.pk]["reviews"]
    assert review.pop("reviewed_at")
    assert review == {
        "reviewer": "rita",
        "outcome": "rejected",
        "reason": "wrong_choice",
        "note": "side b answers the question",
    }
    assert raw[labelled.labels.bob_c1.pk]["review_status"] == "accepted"
    unreviewed = raw[labelled.labels.carol_c3.pk]
    assert (unreviewed["review_status"], unreviewed["reviews"]) == ("unreviewed", [])


def test_a_label_sent_back_is_labelled_again_and_replaced(labelled, reviewer):
    alice, c1 = labelled.users.alice, labelled.comparisons[0]
    old = labelled.labels.alice_c1
    review_label(reviewer=reviewer, label_id=old.pk, data=SEND_BACK)
    # Out of training, on alice's list, her place locked to her alone.
    assert old.pk not in label_ids(training_records())
    [listed] = sent_back(annotator=alice)
    assert (listed.pk, listed.review_reason, listed.review_note) == (old.pk, "wrong_strength", "")
    place = Assignment.objects.get(comparison=c1, annotator=alice)
    assert (place.status, place.locked_until) == ("locked", None)
    with pytest.raises(services.Conflict, match="sent back to its annotator"):
        review_label(reviewer=reviewer, label_id=old.pk, data=ACCEPT)

    new = services.submit_label(annotator=alice, comparison_id=c1.pk, data=AGAIN)
    assert (new.chosen, new.strength, new.review_status) == ("a", "better", "unreviewed")
    assert list(sent_back(annotator=alice)) == []
    assert old.pk not in label_ids(training_records())
    assert new.pk in label_ids(training_records())
    old.refresh_from_db()
    assert old.review_status == "sent_back"  # kept as a record
    # Labelled again once: a second submission is the usual duplicate.
    with pytest.raises(services.DuplicateLabel):
        services.submit_label(annotator=alice, comparison_id=c1.pk, data=AGAIN)


def test_only_an_open_batchs_label_is_sent_back(labelled, reviewer):
    Batch.objects.filter(pk=labelled.batch.pk).update(status="closed")
    with pytest.raises(services.Conflict, match="batch is closed"):
        review_label(reviewer=reviewer, label_id=labelled.labels.bob_c1.pk, data=SEND_BACK)
    assert not Review.objects.exists()
    review_label(
        reviewer=reviewer, label_id=labelled.labels.bob_c1.pk, data=REJECT
    )  # rejecting is still possible


def test_refused_reviews_store_nothing(labelled, reviewer):
    with pytest.raises(services.NotFound):
        review_label(reviewer=reviewer, label_id=10**6, data=ACCEPT)
    own = labelled.labels.alice_c1
    with pytest.raises(services.Conflict, match="your own label"):
        review_label(reviewer=labelled.users.alice, label_id=own.pk, data=ACCEPT)
    for bad, message in [
        (ReviewInput("deleted"), "'outcome' must be one of"),
        (ReviewInput("rejected"), "needs a 'reason'"),
        (ReviewInput("rejected", "looks odd"), "'reason' must be one of"),
        (ReviewInput("sent_back", "other"), "needs a 'note'"),
        (ReviewInput("accepted", note="x" * 501), "over 500 characters"),
    ]:
        with pytest.raises(services.AnnotationError, match=message):
            review_label(reviewer=reviewer, label_id=own.pk, data=bad)
    assert not Review.objects.exists()
    assert set(Label.objects.values_list("review_status", flat=True)) == {"unreviewed"}
