"""The admin's quality views: an admin makes a comparison a gold item; the batch page shows
chance-corrected agreement, the win rate beside the position bias, gold accuracy with the
flagged annotators, and review outcomes per annotator; reviews are listed, never edited."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Comparison, Review
from annotation.reviews import ReviewInput, review_label

# The change form's read-only inline of the two responses still sends its management form.
RESPONSES_SHOWN = {"responses-TOTAL_FORMS": "2", "responses-INITIAL_FORMS": "2"}


@pytest.fixture
def staff_client(client, make_user):
    boss = make_user("boss", staff=True)
    boss.is_superuser = True
    boss.save()
    client.force_login(boss)
    return client


def test_an_admin_makes_a_comparison_a_gold_item(labelled, staff_client):
    c3 = labelled.comparisons[2]
    url = reverse("admin:annotation_comparison_change", args=[c3.pk])
    response = staff_client.post(
        url, {**RESPONSES_SHOWN, "gold_choice": "b", "gold_safety": "chosen_safe_other_unsafe"}
    )
    assert response.status_code == 302
    c3.refresh_from_db()
    assert (c3.gold_choice, c3.gold_safety) == ("b", "chosen_safe_other_unsafe")
    # The rest of the record stays as it was; a safety label alone is refused.
    assert (c3.left, c3.status, c3.heldout) == ("a", "ready", False)
    response = staff_client.post(
        url, {**RESPONSES_SHOWN, "gold_choice": "", "gold_safety": "both_safe"}
    )
    assert response.status_code == 200
    assert "a gold item needs the expected choice" in response.content.decode()
    c3.refresh_from_db()
    assert c3.gold_safety == "chosen_safe_other_unsafe"
    gold = staff_client.get(reverse("admin:annotation_comparison_changelist"), {"gold": "yes"})
    assert [c.pk for c in gold.context["cl"].result_list] == [c3.pk]
    assert staff_client.post(url.replace("/change/", "/delete/")).status_code == 403


def test_the_batch_page_shows_the_quality_figures(labelled, staff_client, make_user):
    Comparison.objects.filter(pk=labelled.comparisons[0].pk).update(gold_choice="a")
    review_label(
        reviewer=make_user("rita", "reviewer"),
        label_id=labelled.labels.bob_c3.pk,
        data=ReviewInput("accepted"),
    )
    page = staff_client.get(reverse("admin:annotation_batch_change", args=[labelled.batch.pk]))
    summary = dict(page.context["stats"]["summary"])
    assert summary["Krippendorff's α (ordinal, signed strength)"] == "-0.520"
    assert summary["Fleiss' κ (choice)"] == "-0.736"
    assert summary["Gold items"] == "1"
    assert summary["Annotators below the gold floor (80.0%)"] == "bob"
    assert summary["Human win rate of policy-new (T 0.7) over policy-old (T 1)"] == (
        "70.0% corrected for position (raw 50.0%; shown left in 5 labels, right in 1)"
    )
    rows = {a["username"]: a for a in page.context["stats"]["annotators"]}
    assert (rows["alice"]["kappa"], rows["alice"]["gold"], rows["alice"]["flagged"]) == (
        "-0.500",
        "100.0% of 1",
        False,
    )
    assert (rows["bob"]["gold"], rows["bob"]["flagged"], rows["bob"]["reviews"]) == (
        "0.0% of 1",
        True,
        "1 / 0 / 0",
    )
    assert page.content.decode().count("below the gold floor</strong>") == 1


def test_reviews_are_listed_and_never_edited(labelled, staff_client, make_user):
    review = review_label(
        reviewer=make_user("rita", "reviewer"),
        label_id=labelled.labels.bob_c3.pk,
        data=ReviewInput("rejected", "careless", "3 s"),
    )
    listing = staff_client.get(reverse("admin:annotation_review_changelist"))
    assert listing.status_code == 200
    assert [r.pk for r in listing.context["cl"].result_list] == [review.pk]
    labels = staff_client.get(
        reverse("admin:annotation_label_changelist"), {"review_status": "rejected"}
    )
    assert [label.pk for label in labels.context["cl"].result_list] == [labelled.labels.bob_c3.pk]
    change = reverse("admin:annotation_review_change", args=[review.pk])
    staff_client.post(change, {"note": "rewritten"})
    assert Review.objects.get().note == "3 s"
