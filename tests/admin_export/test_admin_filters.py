"""The admin lists' filters: each list offers the ones an admin expects, each selects the rows
it names, and a filtered page costs a fixed number of queries."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Assignment, Batch, Comparison
from annotation.reviews import ReviewInput, review_label

FILTERS = {
    "dialogue": ["batch", "source", "guideline", "risky", "author"],
    "comparison": ["batch", "guideline", "status", "heldout", "gold item", "reviewed"],
    "label": [
        "batch",
        "guideline",
        "strength",
        "safety",
        "annotator",
        "review status",
        "heldout",
        "gold item",
    ],
    "skip": ["batch", "guideline", "reason", "annotator"],
    "assignment": ["batch", "status", "annotator"],
    "review": ["batch", "outcome", "reason", "annotator", "reviewer"],
}


@pytest.fixture
def staff_client(client, make_user):
    admin_user = make_user("boss", staff=True)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    return client


@pytest.fixture
def reviewed(labelled, make_user):
    """bob's label of c3 accepted by rita, alice's of c1 rejected by ray; c3 a gold item; a
    second batch and two places held (a filter with a single choice is not shown)."""
    rita, ray = make_user("rita", "reviewer"), make_user("ray", "reviewer")
    review_label(reviewer=rita, label_id=labelled.labels.bob_c3.pk, data=ReviewInput("accepted"))
    review_label(
        reviewer=ray,
        label_id=labelled.labels.alice_c1.pk,
        data=ReviewInput("rejected", "careless"),
    )
    Comparison.objects.filter(pk=labelled.comparisons[2].pk).update(gold_choice="b")
    week = labelled.batch
    Batch.objects.create(
        name="2026-w47", status="closed", model_a=week.model_a, model_b=week.model_b
    )
    for user in (labelled.users.alice, labelled.users.bob):
        Assignment.objects.create(comparison=labelled.comparisons[0], annotator=user)
    return rita


def listed(client, model: str, query: dict) -> set[int]:
    response = client.get(reverse(f"admin:annotation_{model}_changelist"), query)
    assert response.status_code == 200, (model, query)  # an unknown filter redirects
    return {row.pk for row in response.context["cl"].result_list}


@pytest.mark.parametrize("model", FILTERS)
def test_every_list_offers_its_filters(labelled, reviewed, staff_client, model):
    response = staff_client.get(reverse(f"admin:annotation_{model}_changelist"))
    assert [str(spec.title) for spec in response.context["cl"].filter_specs] == FILTERS[model]


def test_the_filters_select_the_rows_they_name(labelled, reviewed, staff_client):
    labels, users = labelled.labels, labelled.users
    c1, c2, c3, c4 = (c.pk for c in labelled.comparisons)
    safety = {"comparison__turn__dialogue__guideline__exact": "safety"}
    on_c3 = {labels.alice_c3.pk, labels.bob_c3.pk, labels.carol_c3.pk}
    assert listed(staff_client, "label", safety) == on_c3
    assert listed(staff_client, "label", {"gold": "yes"}) == on_c3
    assert listed(staff_client, "label", {"comparison__heldout__exact": "1"}) == {
        labels.alice_c2.pk
    }
    assert listed(staff_client, "label", {"annotator__id__exact": users.bob.pk}) == {
        labels.bob_c1.pk,
        labels.bob_c3.pk,
    }
    assert listed(staff_client, "comparison", {"reviewed": "yes"}) == {c1, c3}
    assert listed(staff_client, "comparison", {"reviewed": "no"}) == {c2, c4}
    assert listed(staff_client, "comparison", {"gold": "no"}) == {c1, c2, c4}
    helpfulness = {"comparison__turn__dialogue__guideline__exact": "helpfulness"}
    assert len(listed(staff_client, "skip", helpfulness)) == 3
    assert listed(staff_client, "skip", safety) == set()
    assert listed(staff_client, "dialogue", {"author__id__exact": users.alice.pk}) == {
        labels.alice_c1.comparison.turn.dialogue_id
    }
    [review] = listed(staff_client, "review", {"reviewer__id__exact": reviewed.pk})
    assert listed(staff_client, "review", {"label__annotator__id__exact": users.bob.pk}) == {review}


@pytest.mark.parametrize(
    "model, query",
    [
        ("label", {"review_status__exact": "accepted"}),
        ("label", {"gold": "yes", "annotator__id__exact": 1}),
        ("comparison", {"reviewed": "no", "gold": "yes"}),
        ("review", {"reviewer__id__exact": 1}),
    ],
)
def test_a_filtered_list_costs_a_fixed_number_of_queries(
    labelled, reviewed, staff_client, add_labels, django_assert_max_num_queries, model, query
):
    add_labels(labelled.comparisons[2], 20)
    with django_assert_max_num_queries(12):  # not one more per row
        listed(staff_client, model, query)
