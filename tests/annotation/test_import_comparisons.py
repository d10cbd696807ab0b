"""Importing a preference dataset: training JSONL rows become labelled comparisons of a batch,
which the export gives back as the same rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.export import training_records
from annotation.models import Comparison, Dialogue, Label, Response
from annotation.services import AnnotationError, import_comparisons
from tests.django_fixtures import register

DEMO_WEEK = Path(__file__).resolve().parents[2] / "examples" / "demo-week.jsonl"


def row(**fields):
    return {
        "prompt": "What is the capital of France?",
        "chosen": "Paris.",
        "rejected": "Lyon.",
        "strength": "better",
        "safety": "both_safe",
        "guideline": "helpfulness",
        **fields,
    }


@pytest.fixture
def two_models(batch, tiny_model_dir, artifacts_root):
    batch.model_b = register(tiny_model_dir, artifacts_root, "tiny-b")
    batch.save()
    return batch


def test_each_row_becomes_a_ready_comparison_labelled_once(two_models, make_user):
    annotator = make_user("ann")
    rows = [
        row(edited="Paris, on the Seine."),
        row(
            prompt="How do I pick a lock?",
            guideline="safety",
            risky=True,
            chosen="I can't help with that.",
            rejected="Use a pick.",
            safety="chosen_safe_other_unsafe",
            strength="significantly_better",
        ),
    ]
    labels = import_comparisons(batch=two_models, rows=rows, annotator=annotator)

    assert [label.annotator for label in labels] == [annotator, annotator]
    for given, label in zip(rows, labels, strict=True):
        comparison = label.comparison
        assert comparison.status == Comparison.Status.READY and comparison.ready_at
        assert comparison.batch == two_models and comparison.context_tokens > 0
        dialogue = comparison.turn.dialogue
        assert dialogue.source == Dialogue.Source.IMPORTED and dialogue.author is None
        assert (dialogue.guideline, dialogue.risky) == (
            given["guideline"],
            given.get("risky", False),
        )
        assert comparison.turn.index == 0 and comparison.turn.prompt == given["prompt"]
        assert comparison.response(label.chosen).text == given["chosen"]
        assert comparison.response(label.rejected).text == given["rejected"]
        assert {r.side: r.model_version for r in comparison.responses.all()} == {
            "a": two_models.model_a,
            "b": two_models.model_b,
        }
        assert (label.strength, label.safety) == (given["strength"], given["safety"])
    assert labels[0].edited_response == "Paris, on the Seine."

    exported = list(training_records([two_models]))
    for given, record in zip(rows, exported, strict=True):
        assert {k: record[k] for k in ("prompt", "chosen", "rejected", "strength", "safety")} == {
            k: given[k] for k in ("prompt", "chosen", "rejected", "strength", "safety")
        }
        assert record["annotator"] == "ann" and record["context"] == []


def test_the_chosen_response_lands_on_either_side(batch, make_user):
    random.seed(0)
    labels = import_comparisons(batch=batch, rows=[row()] * 20, annotator=make_user("ann"))
    assert {label.chosen for label in labels} == {"a", "b"}


def test_the_batch_draws_its_held_out_set_not_the_row(batch, make_user):
    batch.heldout_share, batch.heldout_max = 1.0, 3
    batch.save()
    labels = import_comparisons(
        batch=batch, rows=[row(heldout=False)] * 5, annotator=make_user("ann")
    )
    assert sum(label.comparison.heldout for label in labels) == 3

    batch.heldout_share = 0.0
    batch.save()
    labels = import_comparisons(
        batch=batch, rows=[row(heldout=True)] * 2, annotator=labels[0].annotator
    )
    assert not any(label.comparison.heldout for label in labels)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"chosen": None}, r"row 2: missing field 'chosen'"),
        ({"strength": "much"}, r"row 2: unknown strength 'much'"),
        ({"risky": "yes"}, r"row 2: field 'risky' must be bool"),
        ({"rejected": "  "}, r"row 2: field 'rejected' is empty"),
        ({"rejected": "<|im_end|>"}, r"row 2: field 'rejected' contains .*reserves"),
        (
            {
                "context": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                ]
            },
            r"row 2: field 'context' must be empty: only first-turn rows",
        ),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_stored(batch, make_user, bad, message):
    with pytest.raises(AnnotationError, match=message):
        import_comparisons(batch=batch, rows=[row(), row(**bad)], annotator=make_user("ann"))
    assert not Comparison.objects.exists() and not Label.objects.exists()
    assert not Response.objects.exists() and not Dialogue.objects.exists()


def test_a_row_that_is_not_an_object_is_refused(batch, make_user):
    with pytest.raises(AnnotationError, match="row 1: expected a JSON object"):
        import_comparisons(batch=batch, rows=[["a", "list"]], annotator=make_user("ann"))


def test_the_command_imports_the_demo_week_into_the_open_batch(batch, make_user, capsys):
    make_user("annotator")
    call_command("import_comparisons", str(DEMO_WEEK), "--annotator", "annotator")
    rows = [json.loads(line) for line in DEMO_WEEK.read_text().splitlines()]
    assert Label.objects.filter(comparison__batch=batch).count() == len(rows) >= 50
    assert Dialogue.objects.filter(risky=True).count() == sum(r["risky"] for r in rows)
    assert (
        f"imported {len(rows)} labelled comparisons into batch {batch.name}"
        in capsys.readouterr().out
    )


def test_the_command_refuses_an_unknown_annotator_or_a_bad_file(batch, make_user, tmp_path):
    path = tmp_path / "week.jsonl"
    path.write_text(json.dumps(row()) + "\n" + json.dumps(row(safety="fine")) + "\n")
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("import_comparisons", str(path), "--annotator", "nobody")
    make_user("ann")
    with pytest.raises(CommandError, match=r"row 2: unknown safety 'fine'.*nothing was imported"):
        call_command("import_comparisons", str(path), "--annotator", "ann", "--batch", batch.name)
    assert not Comparison.objects.exists()
