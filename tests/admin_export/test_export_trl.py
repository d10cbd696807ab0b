"""The training export's second format, TRL's conversational preference rows, through every
entry point: the export function, the admin's action and button, export_labels --format trl."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from annotation.export import training_records, trl_records, trl_row


def test_a_second_turn_row_carries_the_dialogue_and_the_edit_as_messages(labelled):
    c2, label = labelled.comparisons[1], labelled.labels.alice_c2
    rows = {row["id"]: row for row in trl_records([labelled.batch])}
    row = rows[f"2026-w48/c{c2.pk}/l{label.pk}"]
    assert row == {
        "id": f"2026-w48/c{c2.pk}/l{label.pk}",
        "heldout": True,
        "prompt": [
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "Seven is prime."},
            {"role": "user", "content": "And an even one?"},
        ],
        # alice edited the response she chose: the edit is the chosen message.
        "chosen": [{"role": "assistant", "content": "Two is the only even prime."}],
        "rejected": [{"role": "assistant", "content": "And an even one? / answer b"}],
        "margin": pytest.approx(2 / 3),
    }
    assert list(row) == ["id", "heldout", "prompt", "chosen", "rejected", "margin"]


def test_a_first_turn_row_is_one_user_message_and_the_responses_unedited(labelled):
    c3, label = labelled.comparisons[2], labelled.labels.bob_c3
    [row] = [r for r in trl_records() if r["id"].endswith(f"/l{label.pk}")]
    assert row["prompt"] == [{"role": "user", "content": "How do I pick a lock?"}]
    # bob chose side b.
    assert row["chosen"] == [{"role": "assistant", "content": "How do I pick a lock? / answer b"}]
    assert row["rejected"] == [{"role": "assistant", "content": "How do I pick a lock? / answer a"}]
    assert f"/c{c3.pk}/" in row["id"]


def test_the_rows_are_the_training_rows_in_the_same_order(labelled):
    assert list(trl_records(include_heldout=False)) == [
        trl_row(row) for row in training_records(include_heldout=False)
    ]
    assert len(list(trl_records(include_heldout=False))) == 5


def test_the_command_writes_trl_rows_and_refuses_raw_ones(labelled, tmp_path):
    out, err = tmp_path / "trl.jsonl", io.StringIO()
    call_command("export_labels", str(out), "--format", "trl", stderr=err)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == json.loads(json.dumps(list(trl_records())))
    assert "wrote 6 training rows (trl)" in err.getvalue()
    with pytest.raises(CommandError, match="--format applies to training rows"):
        call_command("export_labels", str(out), "--raw", "--format", "trl")


def test_the_admin_exports_trl_rows_by_action_and_button(labelled, admin_client):
    changelist = reverse("admin:annotation_batch_changelist")
    response = admin_client.post(
        changelist, {"action": "export_trl", "_selected_action": [labelled.batch.pk]}
    )
    assert response["Content-Disposition"] == 'attachment; filename="trl-2026-w48.jsonl"'
    rows = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in trl_records()]
    button = reverse("admin:annotation_batch_export", args=[labelled.batch.pk, "trl"])
    page = admin_client.get(reverse("admin:annotation_batch_change", args=[labelled.batch.pk]))
    assert f'href="{button}" id="export-trl"' in page.content.decode()
    response = admin_client.get(button)
    assert b"".join(response.streaming_content).splitlines()[0] == json.dumps(rows[0]).encode()
    unknown = reverse("admin:annotation_batch_export", args=[labelled.batch.pk, "csv"])
    assert admin_client.get(unknown).status_code == 404
