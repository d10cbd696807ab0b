"""The generate task on a real (tiny) model: both responses sampled, streamed, recorded; a
dialogue continues from the reply the annotator preferred; a broken model fails visibly."""

from __future__ import annotations

import shutil

import pytest

from annotation import services
from annotation.models import Comparison, Response
from tandem.celery import app


@pytest.fixture
def eager_tasks():
    """Tasks run in the caller when their transaction commits (the worker's code, inline)."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_both_responses_are_sampled_and_recorded(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks
):
    alice = make_user("alice")
    with django_capture_on_commit_callbacks(execute=True):
        comparison = services.start_dialogue(
            author=alice, prompt="Name a colour.", guideline="helpfulness"
        ).comparison
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.READY and comparison.ready_at is not None
    # The chat format wraps the prompt: system turn, user turn, assistant header.
    assert comparison.context_tokens > comparison.turn.prompt_tokens + 10
    responses = {r.side: r for r in comparison.responses.all()}
    assert set(responses) == {"a", "b"}
    for response, temperature in ((responses["a"], 0.7), (responses["b"], 1.0)):
        assert response.temperature == temperature
        assert 1 <= response.num_tokens <= batch.max_new_tokens
        assert response.finish_reason in {"stop", "length"}
        assert response.generation_ms is not None and response.text


def test_sampling_is_reproducible_from_the_recorded_seed(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks
):
    from annotation.tasks import generate_comparison

    with django_capture_on_commit_callbacks(execute=True):
        comparison = services.start_dialogue(
            author=make_user("alice"), prompt="Say something.", guideline="helpfulness"
        ).comparison
    before = {r.side: r.text for r in comparison.responses.all()}
    Comparison.objects.filter(pk=comparison.pk).update(status=Comparison.Status.PENDING)
    generate_comparison(comparison.pk)
    assert {r.side: r.text for r in comparison.responses.all()} == before


def test_a_dialogue_continues_from_the_preferred_reply(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks
):
    alice = make_user("alice")
    with django_capture_on_commit_callbacks(execute=True):
        first = services.start_dialogue(
            author=alice, prompt="Hello!", guideline="helpfulness"
        ).comparison
    with pytest.raises(services.Conflict, match="label the last turn"):
        services.continue_dialogue(
            author=alice, dialogue_id=first.turn.dialogue_id, prompt="And then?"
        )
    services.submit_label(
        annotator=alice,
        comparison_id=first.pk,
        data=services.LabelInput("left", "better", "both_safe", 900, edited_response="Hi there."),
    )
    with django_capture_on_commit_callbacks(execute=True):
        second = services.continue_dialogue(
            author=alice, dialogue_id=first.turn.dialogue_id, prompt="How are you?"
        ).comparison
    first.turn.refresh_from_db()
    assert first.turn.reply == "Hi there."
    assert second.turn.index == 1
    second.refresh_from_db()
    assert second.status == Comparison.Status.READY
    assert second.context_tokens > first.context_tokens
    # Only the writer continues their dialogue.
    with pytest.raises(services.NotFound):
        services.continue_dialogue(
            author=make_user("bob"), dialogue_id=first.turn.dialogue_id, prompt="Me too"
        )


def test_a_model_that_cannot_load_fails_the_comparison_visibly(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks, tiny_model_dir, tmp_path
):
    from rlhf.serving import _sampling_policy

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    batch.model_b.artifact_path = str(broken)  # absolute: joined to ARTIFACTS_ROOT it stays so
    batch.model_b.sha256 = "0" * 64
    batch.model_b.save()
    _sampling_policy.cache_clear()
    with django_capture_on_commit_callbacks(execute=True):
        comparison = services.start_dialogue(
            author=make_user("alice"), prompt="Hi", guideline="helpfulness"
        ).comparison
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.FAILED
    assert "model.safetensors" in comparison.error
    with pytest.raises(services.Conflict, match="not ready"):
        services.submit_label(
            annotator=comparison.turn.dialogue.author,
            comparison_id=comparison.pk,
            data=services.LabelInput("left", "better", "both_safe", 1),
        )
    assert Response.objects.filter(comparison=comparison, side="b", finish_reason="").exists()
