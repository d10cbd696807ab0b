"""The comparison JSON's per-side progress (tokens so far of the budget, finish reason, cut off,
sanitized HTML), and retrying a failed generation: who may, when, and that the pair is sampled
again by the real generate task on the tiny model."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Assignment, Batch, Comparison, Response
from rlhf.train import faults

API = "/annotate/api"


def logged_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def written(author) -> Comparison:
    """A first turn of `author`'s, its pair not sampled (no worker runs in these tests)."""
    return services.start_dialogue(
        author=author, prompt="Write a list.", guideline="helpfulness"
    ).comparison


def failed(comparison: Comparison, error: str = "RuntimeError: out of memory") -> None:
    """As the worker leaves a comparison it gave up on, halfway through its pair."""
    Comparison.objects.filter(pk=comparison.pk).update(
        status=Comparison.Status.FAILED, error=error, attempts=3, worker=""
    )
    Response.objects.filter(comparison=comparison).update(text="1. half", num_tokens=2)


def test_each_side_shows_its_progress_while_the_pair_streams(batch, make_user):
    alice = make_user("alice")
    comparison = written(alice)
    client = logged_in(alice)
    pending = client.get(f"{API}/comparisons/{comparison.pk}/").json()
    assert pending["status"] == "pending"
    for side in ("left", "right"):
        assert pending[side] == {
            "text": "",
            "html": "",
            "num_tokens": 0,
            "max_new_tokens": batch.max_new_tokens,
            "finish_reason": "",
            "finished": False,
            "cut_off": False,
        }
    # Mid-stream, as the worker writes it: the left side done, the right one cut off by its
    # budget, the text partial Markdown (an unclosed code fence).
    Comparison.objects.filter(pk=comparison.pk).update(status=Comparison.Status.GENERATING)
    left, right = comparison.left, comparison.right
    Response.objects.filter(comparison=comparison, side=left).update(
        text="- one\n- *two*", num_tokens=6, finish_reason="stop"
    )
    Response.objects.filter(comparison=comparison, side=right).update(
        text="```python\nprint(", num_tokens=8, finish_reason="length"
    )
    shown = client.get(f"{API}/comparisons/{comparison.pk}/").json()
    assert shown["left"]["html"] == "<ul>\n<li>one</li>\n<li><em>two</em></li>\n</ul>"
    assert (shown["left"]["finished"], shown["left"]["cut_off"]) == (True, False)
    assert shown["right"]["html"] == "<pre><code>print(</code></pre>"
    assert shown["right"]["num_tokens"] == 8 and shown["right"]["finish_reason"] == "length"
    assert shown["right"]["cut_off"] is True
    # The context's limit cuts a response off too.
    Response.objects.filter(comparison=comparison, side=left).update(finish_reason="context")
    assert client.get(f"{API}/comparisons/{comparison.pk}/").json()["left"]["cut_off"] is True


def test_a_failed_pair_is_sampled_again_on_retry(
    batch, make_user, eager_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    alice = make_user("alice")
    # The real task fails it: a fault injected where the worker streams.
    monkeypatch.setenv(faults.FAIL, "generate:streaming")
    with django_capture_on_commit_callbacks(execute=True):
        comparison = written(alice)
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.FAILED
    assert "InjectedFault" in comparison.error
    monkeypatch.delenv(faults.FAIL)

    client = logged_in(alice)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        answer = client.post(f"{API}/comparisons/{comparison.pk}/retry/")
    assert answer.status_code == 202, answer.content
    shown = answer.json()
    assert (shown["status"], shown["error"]) == ("pending", "")
    assert shown["left"]["text"] == shown["right"]["text"] == ""
    comparison.refresh_from_db()
    assert (comparison.attempts, comparison.worker) == (0, "")
    # The dialogue and the writer's place are kept.
    assert comparison.assignments.get().annotator == alice
    assert len(sent) == 1  # one message to the generate queue, once the reset committed

    sent[0]()  # the commit's send: the eager task samples the pair
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.READY, comparison.error
    shown = client.get(f"{API}/comparisons/{comparison.pk}/").json()
    for side in ("left", "right"):
        assert shown[side]["text"] and shown[side]["finished"]
        assert 1 <= shown[side]["num_tokens"] <= batch.max_new_tokens


@pytest.mark.parametrize("status", ["pending", "generating", "ready"])
def test_only_a_failed_comparison_is_retried(batch, make_user, status):
    alice = make_user("alice")
    comparison = written(alice)
    Comparison.objects.filter(pk=comparison.pk).update(status=status, attempts=1)
    answer = logged_in(alice).post(f"{API}/comparisons/{comparison.pk}/retry/")
    assert answer.status_code == 409
    assert "only a failed comparison can be generated again" in answer.json()["detail"]
    comparison.refresh_from_db()
    assert (comparison.status, comparison.attempts) == (status, 1)


def test_the_holder_of_a_queue_place_may_retry_and_nobody_else(batch, make_user):
    (item,) = services.import_prompts(
        batch=batch, rows=[{"prompt": "Name a river.", "guideline": "helpfulness"}]
    )
    failed(item)
    holder, outsider = make_user("holder"), make_user("outsider")
    Assignment.objects.filter(comparison=item).update(
        annotator=holder, status=Assignment.Status.LOCKED
    )
    answer = logged_in(outsider).post(f"{API}/comparisons/{item.pk}/retry/")
    assert answer.status_code == 404
    item.refresh_from_db()
    assert item.status == Comparison.Status.FAILED

    assert logged_in(holder).post(f"{API}/comparisons/{item.pk}/retry/").status_code == 202
    item.refresh_from_db()
    assert (item.status, item.error, item.attempts) == (Comparison.Status.PENDING, "", 0)
    assert set(item.responses.values_list("text", "num_tokens", "finish_reason")) == {("", 0, "")}


def test_a_writer_who_gave_the_place_back_cannot_retry(batch, make_user):
    alice = make_user("alice")
    comparison = written(alice)
    failed(comparison)
    services.skip(annotator=alice, comparison_id=comparison.pk, reason="broken_response")
    # No one could label it: the writer's place went with the skip.
    assert logged_in(alice).post(f"{API}/comparisons/{comparison.pk}/retry/").status_code == 404


def test_a_closed_batch_is_not_sampled_again(batch, make_user):
    alice = make_user("alice")
    comparison = written(alice)
    failed(comparison)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.CLOSED)
    answer = logged_in(alice).post(f"{API}/comparisons/{comparison.pk}/retry/")
    assert answer.status_code == 409 and "closed" in answer.json()["detail"]


def test_retry_needs_an_annotator_and_a_comparison(batch, make_user):
    alice = make_user("alice")
    comparison = written(alice)
    failed(comparison)
    researcher = logged_in(make_user("rita", "researcher"))
    assert researcher.post(f"{API}/comparisons/{comparison.pk}/retry/").status_code == 403
    assert APIClient().post(f"{API}/comparisons/{comparison.pk}/retry/").status_code == 403
    assert logged_in(alice).post(f"{API}/comparisons/999999/retry/").status_code == 404
