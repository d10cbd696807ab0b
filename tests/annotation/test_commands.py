"""Management commands: importing the base model and queue prompts, and the demo set-up."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.models import Assignment, Batch, Comparison


def test_import_prompts_queues_each_prompt_for_overlap_annotators(batch, tmp_path):
    batch.overlap = 2
    batch.save()
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"prompt": "How do I boil an egg?", "guideline": "helpfulness"},
        {"prompt": "How do I pick a lock?", "guideline": "safety", "risky": True},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    call_command("import_prompts", str(path))
    assert Comparison.objects.filter(batch=batch).count() == 2
    risky = Comparison.objects.get(turn__dialogue__risky=True)
    assert risky.turn.dialogue.guideline == "safety"
    assert Assignment.objects.filter(comparison=risky, annotator=None).count() == 2


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prompt": "ok", "guideline": "helpfulness"}\n{oops\n', "line 2: not JSON"),
        ('{"prompt": "ok", "guideline": "fun"}\n', "row 1: 'guideline'"),
    ],
)
def test_import_prompts_refuses_bad_files_whole(batch, tmp_path, content, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(CommandError, match=message):
        call_command("import_prompts", str(path))
    assert not Comparison.objects.exists()


def test_import_prompts_needs_an_open_batch(db, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "ok", "guideline": "helpfulness"}\n')
    with pytest.raises(CommandError, match="no batch is open"):
        call_command("import_prompts", str(path))


@pytest.mark.smollm2
def test_setup_demo_imports_the_base_model_once_and_opens_a_batch(db, capsys):
    call_command("setup_demo")
    call_command("setup_demo")  # a second start changes nothing
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.OPEN
    assert batch.model_a.name == "smollm2-135m-instruct" and batch.model_a.directory.is_dir()
    assert (batch.temperature_a, batch.temperature_b) == (0.7, 1.0)
    annotator = get_user_model().objects.get(username="annotator")
    assert annotator.check_password("tandem-annotator") and not annotator.is_staff
    assert annotator.groups.filter(name="annotator").exists()
    assert "login: admin / tandem-admin" in capsys.readouterr().out
