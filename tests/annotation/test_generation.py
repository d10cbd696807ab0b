"""The generate task on a real (tiny) model: both responses sampled together, streamed with
their token counts, recorded with why each ended; a dialogue continues from the reply the
annotator preferred; a broken model fails visibly."""

from __future__ import annotations

import itertools
import re
import shutil
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation import generation, services
from annotation.models import Comparison, Response
from modelcore.chat import Message
from modelcore.sampling import SamplingParams
from modelcore.tiny import save_tiny_model
from rlhf.serving import sample_reply
from tests.django_fixtures import register


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


def test_queue_mode_samples_imported_prompts_before_anyone_asks(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks
):
    # Queue mode generates ahead: importing the prompts sends their sampling, so the first
    # claim is served a comparison whose two responses are already complete.
    rows = [{"prompt": f"Name a colour ({n}).", "guideline": "helpfulness"} for n in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        imported = services.import_prompts(batch=batch, rows=rows)
    statuses = Comparison.objects.filter(pk__in=[c.pk for c in imported]).values_list(
        "status", flat=True
    )
    assert list(statuses) == [Comparison.Status.READY] * 2
    with django_capture_on_commit_callbacks(execute=True) as sent:
        served = services.claim_next(annotator=make_user("alice"))
    assert sent == []  # the claim started no sampling: there was none left to do
    assert served.pk in {c.pk for c in imported}
    assert all(r.text and r.finish_reason for r in served.responses.all())


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


@pytest.fixture
def two_versions(batch, artifacts_root):
    """The batch serves two versions: the tiny model and another of its random draws."""
    directory = save_tiny_model(artifacts_root / "models" / "tiny-other", seed=1, overwrite=True)
    batch.model_b = register(directory, artifacts_root, "tiny-other")
    batch.save()
    return batch


def streamed_counts(queries: CaptureQueriesContext) -> list[tuple[int, int]]:
    """(response id, num_tokens) of every streaming write, in order: the UPDATEs that set text
    and num_tokens only (the final write sets finish_reason too)."""
    pattern = re.compile(r'"num_tokens" = (\d+) WHERE "annotation_response"\."id" = (\d+)')
    return [
        (int(match[2]), int(match[1]))
        for query in queries.captured_queries
        if (match := pattern.search(query["sql"]))
    ]


def test_both_sides_stream_their_text_and_token_counts_together(
    two_versions, make_user, monkeypatch
):
    comparison = services.start_dialogue(
        author=make_user("alice"), prompt="Name a colour.", guideline="helpfulness"
    ).comparison
    monkeypatch.setattr(generation, "STREAM_INTERVAL", 0)  # every token written
    with CaptureQueriesContext(connection) as queries:
        assert generation.generate(comparison.pk) == "ready"
    writes = streamed_counts(queries)
    responses = {r.pk: r for r in comparison.responses.select_related("model_version")}
    for pk, response in responses.items():
        counts = [count for written, count in writes if written == pk]
        # One more token per write (a stop token adds none), up to the recorded count.
        assert counts[0] == 1 and counts[-1] == response.num_tokens
        assert all(b - a in (0, 1) for a, b in itertools.pairwise(counts))
        alone, completion = sample_reply(
            response.model_version,
            [Message("user", "Name a colour.")],
            SamplingParams(
                max_new_tokens=response.max_new_tokens,
                temperature=response.temperature,
                top_p=response.top_p,
                seed=response.seed,
            ),
            lambda _: None,
        )
        assert (response.text, response.finish_reason) == (alone, completion.finish_reason)
    # The two versions advanced together: each side's first write came before the other's last.
    order = [pk for pk, _ in writes]
    for pk in responses:
        other = next(o for o in responses if o != pk)
        assert order.index(pk) < len(order) - 1 - order[::-1].index(other)


def test_each_response_records_why_it_ended_and_streams_at_most_every_interval(batch, make_user):
    # A prompt that leaves a little more room in the tiny model's context (1024 tokens) than
    # the batch's replies need.
    comparison = services.start_dialogue(
        author=make_user("alice"), prompt="Repeat after me: " + "a " * 970, guideline="helpfulness"
    ).comparison
    assert 8 < 1024 - comparison.context_tokens < 40
    # Budgets the batch would not give, to reach both limits: the length asked for, and the
    # context before the length asked for.
    Response.objects.filter(comparison=comparison, side="a").update(max_new_tokens=3, seed=1)
    Response.objects.filter(comparison=comparison, side="b").update(max_new_tokens=5000, seed=2)
    started = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        assert generation.generate(comparison.pk) == "ready"
    elapsed = time.monotonic() - started
    comparison.refresh_from_db()
    short, long = comparison.responses.order_by("side")
    assert (short.finish_reason, short.num_tokens) == ("length", 3)
    assert (long.finish_reason, long.num_tokens) == ("context", 1024 - comparison.context_tokens)
    assert 0 < short.generation_ms <= long.generation_ms
    # Each side's first token is written at once, later ones at most every STREAM_INTERVAL (a
    # write updates each side that grew since the last).
    writes = streamed_counts(queries)
    assert writes[:2] == [(short.pk, 1), (long.pk, 1)]
    assert len(writes) <= 2 * (2 + elapsed / generation.STREAM_INTERVAL)
