"""The reviewers' JSON API and page: who may review, what a reviewer sees, and the status
codes of a review (201, 400 naming the field, 404 for an unknown label, 409)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Label, Review

API = "/annotate/api"


@pytest.fixture
def client_for(make_user):
    def make(username: str, *roles: str, staff: bool = False) -> APIClient:
        client = APIClient()
        client.force_login(make_user(username, *roles, staff=staff))
        return client

    return make


def test_a_reviewer_sees_the_labels_as_the_annotator_did(labelled, client_for):
    response = client_for("rita", "reviewer").get(f"{API}/reviews/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == sorted(Label.objects.values_list("pk", flat=True))
    c2_label = next(r for r in results if r["id"] == labelled.labels.alice_c2.pk)
    assert c2_label["context"] == [
        {"role": "user", "content": "Name a prime."},
        {"role": "assistant", "content": "Seven is prime."},
    ]
    # c2 shows side b on the left; alice chose side a, on the right.
    assert (c2_label["left"], c2_label["right"], c2_label["chosen"]) == (
        "And an even one? / answer b",
        "And an even one? / answer a",
        "right",
    )
    assert (c2_label["edited_response"], c2_label["time_spent_ms"]) == (
        "Two is the only even prime.",
        20_000,
    )
    assert (c2_label["annotator"], c2_label["review_status"], c2_label["reviews"]) == (
        "alice",
        "unreviewed",
        [],
    )
    assert "model" not in str(results)


def test_a_review_is_201_and_leaves_the_list_of_unreviewed_labels(labelled, client_for):
    client = client_for("rita", "reviewer")
    label = labelled.labels.bob_c3
    response = client.post(
        f"{API}/labels/{label.pk}/review/",
        {"outcome": "rejected", "reason": "careless", "note": "3 s for a long pair"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["label"], body["reviewer"], body["outcome"], body["reason"]) == (
        label.pk,
        "rita",
        "rejected",
        "careless",
    )
    unreviewed = [r["id"] for r in client.get(f"{API}/reviews/").json()["results"]]
    assert label.pk not in unreviewed and len(unreviewed) == 5
    rejected = client.get(f"{API}/reviews/", {"status": "rejected", "batch": "2026-w48"}).json()
    assert [r["id"] for r in rejected["results"]] == [label.pk]
    assert rejected["results"][0]["reviews"][0]["note"] == "3 s for a long pair"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"outcome": "deleted"}, "outcome"),
        ({"outcome": "rejected", "reason": "looks odd"}, "reason"),
        ({"outcome": "accepted", "note": "x" * 501}, "note"),
    ],
)
def test_a_malformed_review_is_400_naming_the_field(labelled, client_for, body, field):
    label = labelled.labels.bob_c3
    response = client_for("rita", "reviewer").post(
        f"{API}/labels/{label.pk}/review/", body, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Review.objects.exists()


@pytest.mark.parametrize("token", ["<|im_start|>", "<|endoftext|>"])
def test_a_review_note_with_a_special_token_is_400_and_nothing_is_stored(
    labelled, client_for, token
):
    """The note goes into the raw export, so it passes the rule every such text passes."""
    label = labelled.labels.bob_c3
    response = client_for("rita", "reviewer").post(
        f"{API}/labels/{label.pk}/review/",
        {"outcome": "sent_back", "reason": "other", "note": f"fine{token}system"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == (
        f"the note contains {token!r}, which the model reserves for its chat format"
    )
    assert not Review.objects.exists()
    label.refresh_from_db()
    assert label.review_status == "unreviewed"


def test_a_reject_without_a_reason_is_400_and_an_unknown_label_404(labelled, client_for):
    client = client_for("rita", "reviewer")
    label = labelled.labels.bob_c3
    response = client.post(
        f"{API}/labels/{label.pk}/review/", {"outcome": "rejected"}, format="json"
    )
    assert response.status_code == 400
    assert "needs a 'reason'" in response.json()["detail"]
    response = client.post(f"{API}/labels/999999/review/", {"outcome": "accepted"}, format="json")
    assert response.status_code == 404
    response = client.get(f"{API}/reviews/", {"batch": "2099-w01"})
    assert (response.status_code, response.json()["field"]) == (400, "batch")
    assert not Review.objects.exists()


def test_only_reviewers_and_staff_review(labelled, client_for):
    label = labelled.labels.bob_c3
    url = f"{API}/labels/{label.pk}/review/"
    for client in (client_for("ann", "annotator"), client_for("res", "researcher")):
        assert client.get(f"{API}/reviews/").status_code == 403
        assert client.post(url, {"outcome": "accepted"}, format="json").status_code == 403
    assert APIClient().post(url, {"outcome": "accepted"}, format="json").status_code in (401, 403)
    assert not Review.objects.exists()
    staff = client_for("boss", "annotator", staff=True)
    assert staff.post(url, {"outcome": "accepted"}, format="json").status_code == 201
    # Nobody reviews their own label, and an annotator is not shown their own.
    bob = labelled.users.bob
    bob.groups.add(Group.objects.get_or_create(name="reviewer")[0])
    own = APIClient()
    own.force_login(bob)
    assert own.post(url, {"outcome": "accepted"}, format="json").status_code == 409
    assert label.pk not in [r["id"] for r in own.get(f"{API}/reviews/").json()["results"]]


def test_the_review_page_lists_labels_and_records_a_review(labelled, client, make_user):
    client.force_login(make_user("rita", "reviewer"))
    page = client.get(reverse("frontend:review"))
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count('class="card review"') == 6
    assert "Two is the only even prime." in text and "How do I pick a lock?" in text
    label = labelled.labels.carol_c3
    url = reverse("frontend:review-label", args=[label.pk])
    response = client.post(url, {"outcome": "rejected", "reason": ""})
    assert response.status_code == 400
    assert "needs a &#x27;reason&#x27;" in response.content.decode()
    response = client.post(url, {"outcome": "sent_back", "reason": "wrong_safety"}, follow=True)
    assert response.redirect_chain == [(reverse("frontend:review"), 302)]
    assert response.content.decode().count('class="card review"') == 5
    assert Review.objects.get().outcome == "sent_back"
    unknown = reverse("frontend:review-label", args=[999999])
    assert client.post(unknown, {"outcome": "accepted"}).status_code == 404


def test_the_annotator_finds_what_was_sent_back_to_them(labelled, client, make_user):
    from annotation.reviews import ReviewInput, review_label

    review_label(
        reviewer=make_user("rita", "reviewer"),
        label_id=labelled.labels.carol_c3.pk,
        data=ReviewInput("sent_back", "wrong_safety", "both are safe"),
    )
    client.force_login(labelled.users.carol)
    page = client.get(reverse("frontend:sent-back")).content.decode()
    comparison = reverse("frontend:comparison", args=[labelled.comparisons[2].pk])
    assert f'href="{comparison}"' in page
    assert "the safety label is wrong: both are safe" in page
    # Her comparison no longer shows the label as given: she labels it again.
    shown = client.get(f"{API}/comparisons/{labelled.comparisons[2].pk}/").json()
    assert shown["label"] is None


def test_the_review_page_is_for_reviewers_only(labelled, client, make_user):
    client.force_login(make_user("ann", "annotator"))
    response = client.get(reverse("frontend:review"))
    assert response.status_code == 403
    assert "You are not a reviewer" in response.content.decode()
    label = labelled.labels.carol_c3
    response = client.post(
        reverse("frontend:review-label", args=[label.pk]), {"outcome": "accepted"}
    )
    assert response.status_code == 403
    assert not Review.objects.exists()
