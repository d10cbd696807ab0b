"""The training rows and raw records of the constructed batch (conftest.py), and the
export_labels command."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotation import export
from annotation.export import UnknownBatch, raw_records, training_records
from annotation.models import Batch, Label

TRAINING_KEYS = [
    "id",
    "batch",
    "heldout",
    "guideline",
    "risky",
    "context",
    "prompt",
    "chosen",
    "rejected",
    "edited",
    "strength",
    "margin",
    "safety",
    "annotator",
    "chosen_model",
    "rejected_model",
    "labelled_at",
]


def test_a_second_turn_row_has_the_first_turn_as_context_and_the_edit(labelled):
    c2 = labelled.comparisons[1]
    label = labelled.labels.alice_c2
    rows = {row["id"]: row for row in training_records([labelled.batch])}
    row = rows[f"2026-w48/c{c2.pk}/l{label.pk}"]
    assert list(row) == TRAINING_KEYS
    assert row == {
        "id": f"2026-w48/c{c2.pk}/l{label.pk}",
        "batch": "2026-w48",
        "heldout": True,
        "guideline": "helpfulness",
        "risky": False,
        "context": [
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "Seven is prime."},
        ],
        "prompt": "And an even one?",
        # alice chose side a (shown on the right): the batch's model_a, the newer policy.
        "chosen": "And an even one? / answer a",
        "rejected": "And an even one? / answer b",
        "edited": "Two is the only even prime.",
        "strength": "better",
        "margin": pytest.approx(2 / 3),
        "safety": "both_safe",
        "annotator": "alice",
        "chosen_model": "policy-new",
        "rejected_model": "policy-old",
        "labelled_at": "2026-11-23T10:30:00+00:00",
    }


def test_one_row_per_label_with_margins_and_models_per_chosen_side(labelled):
    rows = list(training_records())
    assert len(rows) == 6  # c3 labelled by three annotators gives three rows
    c3 = labelled.comparisons[2]
    on_c3 = [r for r in rows if f"/c{c3.pk}/" in r["id"]]
    assert [(r["annotator"], r["chosen_model"], r["margin"]) for r in on_c3] == [
        ("alice", "policy-old", 0.0),
        ("bob", "policy-old", pytest.approx(1 / 3)),
        ("carol", "policy-new", 0.0),
    ]
    assert all(r["context"] == [] and r["edited"] is None for r in on_c3)
    assert all(r["guideline"] == "safety" and r["risky"] is True for r in on_c3)
    first = next(r for r in rows if r["strength"] == "significantly_better")
    assert (first["margin"], first["heldout"]) == (1.0, False)
    # The rows are plain JSON.
    assert json.loads(json.dumps(rows)) == rows


def test_heldout_rows_can_be_left_out_and_batches_chosen_by_name(labelled, versions):
    Batch.objects.filter(pk=labelled.batch.pk).update(status="closed")
    Batch.objects.create(name="2026-w49", model_a=versions[0], model_b=versions[1])
    assert len(list(training_records(["2026-w48"]))) == 6
    kept = list(training_records(["2026-w48"], include_heldout=False))
    assert len(kept) == 5
    assert not any(row["heldout"] for row in kept)
    assert list(training_records(["2026-w49"])) == []
    with pytest.raises(UnknownBatch, match="nope"):
        training_records(["2026-w48", "nope"])


def test_raw_records_carry_positions_responses_and_skips(labelled):
    records = list(raw_records([labelled.batch]))
    labels = [r for r in records if r["record"] == "label"]
    skips = [r for r in records if r["record"] == "skip"]
    assert len(labels) == 6
    assert sorted((s["annotator"], s["reason"]) for s in skips) == [
        ("bob", "unclear_prompt"),
        ("carol", "other"),
        ("carol", "unclear_prompt"),
    ]
    raw = next(r for r in labels if r["label_id"] == labelled.labels.alice_c2.pk)
    assert (raw["left"], raw["chosen"], raw["chosen_position"]) == ("b", "a", "right")
    assert raw["rationale"] == "shorter"
    assert raw["time_spent_ms"] == 20_000
    assert raw["prompt_tokens"] == 20
    assert raw["responses"]["a"]["model"] == "policy-new"
    assert raw["responses"]["a"]["temperature"] == 0.7
    assert raw["responses"]["b"]["temperature"] == 1.0
    assert raw["responses"]["b"]["num_tokens"] == 40
    assert raw["dialogue_author"] == "alice"


def test_the_export_reads_chunks_with_three_queries_each(
    labelled, add_labels, monkeypatch, django_assert_max_num_queries
):
    add_labels(labelled.comparisons[2], 30)
    # One chunk: the labels (joined with comparison, turn, dialogue, batch and annotator), their
    # responses, and their dialogues' earlier turns.
    with django_assert_max_num_queries(3):
        whole = list(training_records())
    assert len(whole) == 36
    # Chunks of five: the same rows in the same order, three queries per chunk.
    monkeypatch.setattr(export, "CHUNK", 5)
    with django_assert_max_num_queries(3 * 8):
        assert list(training_records()) == whole
    assert [r["id"] for r in whole] == sorted(
        (r["id"] for r in whole), key=lambda i: int(i.rsplit("/l", 1)[1])
    )


def test_the_command_writes_the_file_whole(labelled, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text("an older export\n")
    err = io.StringIO()
    call_command("export_labels", str(out), "--batch", "2026-w48", stderr=err)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6
    assert rows == list(training_records())
    assert "wrote 6 training rows" in err.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["labels.jsonl"]  # no temporary left


def test_the_command_writes_raw_records_to_stdout_without_heldout(labelled):
    out = io.StringIO()
    call_command(
        "export_labels", "-", "--raw", "--exclude-heldout", stdout=out, stderr=io.StringIO()
    )
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["record"] for r in rows] == ["label"] * 5 + ["skip"]  # carol's skip on c1
    assert not any(r["heldout"] for r in rows)


def test_the_command_refuses_an_unknown_batch_and_keeps_the_old_file(labelled, tmp_path):
    out = tmp_path / "labels.jsonl"
    out.write_text("an older export\n")
    with pytest.raises(CommandError, match=r"unknown batch: 2026-w99 \(recent batches: 2026-w48\)"):
        call_command("export_labels", str(out), "--batch", "2026-w99")
    assert out.read_text() == "an older export\n"


def test_the_trainer_reads_every_exported_row(labelled, tmp_path):
    """The export and rlhf.train read the same format: every row parses, field for field."""
    from rlhf.train.data import read_comparisons

    path = tmp_path / "train.jsonl"
    call_command("export_labels", str(path), "--batch", labelled.batch.name)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    parsed = read_comparisons(path)
    assert len(parsed) == len(rows) == Label.objects.count()
    for row, comparison in zip(rows, parsed, strict=True):
        assert (comparison.prompt, comparison.chosen, comparison.rejected) == (
            row["prompt"],
            row["chosen"],
            row["rejected"],
        )
        assert (comparison.strength, comparison.safety, comparison.heldout) == (
            row["strength"],
            row["safety"],
            row["heldout"],
        )
        assert comparison.edited == row["edited"]
        assert [(m.role, m.content) for m in comparison.context] == [
            (m["role"], m["content"]) for m in row["context"]
        ]
