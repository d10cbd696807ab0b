"""The admin: the batch page shows the statistics and charts in a bounded number of queries,
the lists render, and the actions close, open and export batches."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotation.models import Batch


@pytest.fixture
def staff_client(client, make_user):
    admin_user = make_user("boss", staff=True)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    return client


def test_the_batch_page_shows_the_statistics_and_charts(
    labelled, staff_client, django_assert_max_num_queries
):
    url = reverse("admin:annotation_batch_change", args=[labelled.batch.pk])
    with django_assert_max_num_queries(20):
        response = staff_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="batch-statistics"' in page
    stats = response.context["stats"]
    summary = dict(stats["summary"])
    assert summary["Labels"] == "6"
    assert summary["Share “negligibly better / unsure”"] == "33.3%"
    assert summary["Median time per label"] == "35.0 s"
    assert summary["Mean tokens per prompt"] == "25.0"
    assert summary["Agreement on overlapping items"] == "25.0% of 4 annotator pairs on 2 items"
    assert summary["Failed generations"] == "1"
    assert [a["username"] for a in stats["annotators"]] == ["alice", "bob", "carol"]
    assert stats["annotators"][0]["per_hour"] == "120.0"
    # Two inline SVG charts: four strength bars, the longest for "better" (2 of 6), two days.
    section = page[page.index('id="batch-statistics"') : page.index("</section>")]
    assert section.count("<svg") == 2
    assert 'aria-label="Labels per strength"' in section
    assert 'aria-label="Labels per day"' in section
    assert page.count('class="strength-bar"') == 4
    bars = {b["label"]: b["width"] for b in stats["strength_chart"]["bars"]}
    assert bars["better"] == max(bars.values())
    assert bars["significantly better"] == bars["better"] / 2
    assert [c["count"] for c in stats["daily_chart"]["columns"]] == [3, 3]
    assert "23 Nov" in page
    assert '<script src="http' not in page  # nothing fetched from elsewhere


def test_the_page_costs_the_same_with_more_labels(
    labelled, staff_client, add_labels, django_assert_max_num_queries
):
    add_labels(labelled.comparisons[2], 20)
    url = reverse("admin:annotation_batch_change", args=[labelled.batch.pk])
    with django_assert_max_num_queries(20):
        response = staff_client.get(url)
    assert len(response.context["stats"]["annotators"]) == 23


def test_the_lists_render_with_their_counts(labelled, staff_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        response = staff_client.get(reverse("admin:annotation_batch_changelist"))
    assert response.status_code == 200
    assert 'id="open-next-batch"' in response.content.decode()
    [row] = response.context["cl"].result_list
    assert (row.comparison_count, row.label_count, row.heldout_count) == (4, 6, 1)
    for model in ("dialogue", "comparison", "label", "skip", "assignment"):
        with django_assert_max_num_queries(10):  # not one more per row
            response = staff_client.get(reverse(f"admin:annotation_{model}_changelist"))
        assert response.status_code == 200, model
    response = staff_client.get(
        reverse("admin:annotation_label_changelist"), {"strength": "negligibly_better"}
    )
    assert response.context["cl"].result_count == 2
    c2 = labelled.comparisons[1]
    response = staff_client.get(reverse("admin:annotation_comparison_change", args=[c2.pk]))
    assert response.status_code == 200
    assert "And an even one? / answer b" in response.content.decode()


def test_close_and_open_next_batch(labelled, staff_client):
    changelist = reverse("admin:annotation_batch_changelist")
    response = staff_client.post(
        changelist,
        {"action": "close_batches", "_selected_action": [labelled.batch.pk]},
        follow=True,
    )
    assert "Closed 1 batch." in response.content.decode()
    labelled.batch.refresh_from_db()
    assert labelled.batch.status == "closed"
    assert labelled.batch.closed_at is not None
    response = staff_client.post(reverse("admin:annotation_batch_open_next"), follow=True)
    opened = Batch.objects.get(status="open")
    assert opened.name != labelled.batch.name
    assert f"Opened batch {opened.name}" in response.content.decode()
    # Both published policies serve it, newest first.
    assert {opened.model_a.name, opened.model_b.name} == {"policy-new", "policy-old"}


def test_export_actions_stream_jsonl(labelled, staff_client):
    changelist = reverse("admin:annotation_batch_changelist")
    response = staff_client.post(
        changelist, {"action": "export_training", "_selected_action": [labelled.batch.pk]}
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="training-2026-w48.jsonl"'
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert len(rows) == 6
    assert {r["batch"] for r in rows} == {"2026-w48"}
    response = staff_client.get(
        reverse("admin:annotation_batch_export", args=[labelled.batch.pk, "raw"])
    )
    records = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["record"] for r in records] == ["label"] * 6 + ["skip"] * 3


def test_annotators_cannot_see_the_admin(labelled, client, make_user):
    client.force_login(make_user("eve"))
    response = client.get(reverse("admin:annotation_batch_change", args=[labelled.batch.pk]))
    assert response.status_code == 302
    response = client.get(
        reverse("admin:annotation_batch_export", args=[labelled.batch.pk, "training"])
    )
    assert response.status_code == 302


def test_the_page_of_an_empty_batch_says_so(versions, staff_client):
    empty = Batch.objects.create(name="2026-w50", model_a=versions[0], model_b=versions[1])
    response = staff_client.get(reverse("admin:annotation_batch_change", args=[empty.pk]))
    assert response.status_code == 200
    summary = dict(response.context["stats"]["summary"])
    assert (summary["Labels"], summary["Median time per label"]) == ("0", "–")
    assert response.content.decode().count("No labels yet.") == 2  # no daily chart, no annotators
