"""The research API's batches: counts in the list, full statistics in the detail, closing early,
and the labels as streamed JSON Lines."""

from __future__ import annotations

import json

import pytest
from rest_framework.throttling import ScopedRateThrottle

from annotation.models import Batch

API = "/api/batches/"


def lines(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/jsonl; charset=utf-8"
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def test_batches_are_listed_with_their_label_counts(world, researcher):
    listing = researcher.get(API).json()
    assert [b["name"] for b in listing["results"]] == ["2026-w48", "2026-w47"]
    closed = listing["results"][1]
    assert (closed["status"], closed["comparisons"], closed["heldout"], closed["labels"]) == (
        "closed",
        8,
        2,
        8,
    )
    assert sum(closed["labels_per_strength"].values()) == 8
    assert closed["labels_per_strength"]["significantly_better"] == 2  # labels 0 and 4
    assert sum(closed["labels_per_safety"].values()) == 8
    assert (closed["model_a"], closed["model_b"]) == ("tiny", "tiny")
    assert listing["results"][0]["labels"] == 0


def test_the_list_costs_the_same_queries_for_any_number_of_batches(
    world, researcher, django_assert_max_num_queries
):
    for week in range(10):
        Batch.objects.create(
            name=f"2025-w{week:02d}", model_a=world.base, model_b=world.base, status="closed"
        )
    # The token and its user, its last use, the role, then the count and the page itself.
    with django_assert_max_num_queries(5):
        assert researcher.get(API).json()["count"] == 12


def test_the_detail_has_the_batch_statistics(world, researcher):
    body = researcher.get(f"{API}2026-w47/").json()
    statistics = body["statistics"]
    assert statistics["labels"] == 8 and statistics["heldout_labels"] == 2
    assert {b["key"]: b["count"] for b in statistics["per_strength"]} == body["labels_per_strength"]
    assert statistics["annotators"][0]["username"] == "ann"
    assert statistics["labels_per_day"][0]["labels"] == 8
    assert researcher.get(f"{API}2099-w01/").status_code == 404


def test_closing_a_batch_early_closes_it_once(world, researcher):
    response = researcher.post(f"{API}2026-w48/close/")
    assert response.status_code == 200
    assert response.json()["status"] == "closed"
    assert Batch.objects.get(name="2026-w48").closed_at is not None
    again = researcher.post(f"{API}2026-w48/close/")
    assert again.status_code == 409
    assert again.json() == {"detail": "2026-w48 is already closed", "field": None}


def test_the_labels_stream_as_training_rows(world, researcher):
    response = researcher.get(f"{API}2026-w47/labels.jsonl")
    assert response["Content-Disposition"] == 'attachment; filename="2026-w47-training.jsonl"'
    rows = lines(response)
    assert len(rows) == 8
    assert sum(row["heldout"] for row in rows) == 2
    assert {"prompt", "chosen", "rejected", "strength", "margin", "safety"} <= set(rows[0])
    assert rows[1]["chosen"] == "1 plus 1 is 2."
    assert rows[1]["rejected"] == "I would rather not say."


def test_the_raw_labels_carry_everything_and_the_skips(world, researcher):
    rows = lines(researcher.get(f"{API}2026-w47/labels.jsonl", {"kind": "raw"}))
    assert {row["record"] for row in rows} == {"label"}
    assert rows[0]["responses"]["a"]["text"] == "0 plus 0 is 0."


def test_labels_of_an_unknown_batch_or_kind_are_refused(world, researcher):
    response = researcher.get(f"{API}2099-w01/labels.jsonl")
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown batch: 2099-w01", "field": None}
    response = researcher.get(f"{API}2026-w47/labels.jsonl", {"kind": "csv"})
    assert (response.status_code, response.json()["field"]) == (400, "kind")


@pytest.mark.parametrize("path", ["2026-w47/labels.jsonl", "2026-w47/"])
def test_only_the_exports_are_throttled(world, researcher, monkeypatch, path):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "export", "1/hour")
    first = researcher.get(f"{API}{path}")
    assert first.status_code == 200
    b"".join(getattr(first, "streaming_content", []))
    expected = 429 if path.endswith(".jsonl") else 200
    assert researcher.get(f"{API}{path}").status_code == expected
