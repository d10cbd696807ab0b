"""The queue: claims under concurrency, overlap, lock expiry, skips, and labels stored once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, Comparison, Label, Response, Skip

GOOD = services.LabelInput(chosen="left", strength="better", safety="both_safe", time_spent_ms=4200)


def queue_items(batch, count: int) -> list[Comparison]:
    """Imported prompts whose responses are ready (written here: the generation is not what
    these tests are about)."""
    comparisons = services.import_prompts(
        batch=batch,
        rows=[{"prompt": f"Question {i}?", "guideline": "helpfulness"} for i in range(count)],
    )
    Response.objects.filter(comparison__in=comparisons).update(
        text="an answer", num_tokens=2, finish_reason="stop"
    )
    Comparison.objects.filter(pk__in=[c.pk for c in comparisons]).update(
        status=Comparison.Status.READY
    )
    return comparisons


def in_threads(functions):
    """Run each function in its own thread and connection, all released at once."""
    barrier = threading.Barrier(len(functions))
    results: list = [None] * len(functions)

    def run(index, function):
        try:
            barrier.wait()
            results[index] = function()
        except Exception as error:  # returned, so the test sees what went wrong
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_annotators_fetching_at_once_never_share_an_item(batch, make_user):
    queue_items(batch, 6)
    annotators = [make_user(f"a{i}") for i in range(6)]
    claimed = in_threads(
        [lambda user=user: services.claim_next(annotator=user) for user in annotators]
    )
    assert all(isinstance(c, Comparison) for c in claimed), claimed
    assert len({c.pk for c in claimed}) == 6
    assert Assignment.objects.filter(status=Assignment.Status.LOCKED).count() == 6
    # Nothing is left for a seventh.
    assert services.claim_next(annotator=make_user("late")) is None


@pytest.mark.django_db(transaction=True)
def test_overlap_gives_an_item_to_several_annotators_but_once_each(batch, make_user):
    batch.overlap = 2
    batch.save()
    [item] = queue_items(batch, 1)
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    assert services.claim_next(annotator=alice) == item
    assert services.claim_next(annotator=alice) == item  # a reload gives back the same item
    assert services.claim_next(annotator=bob) == item
    assert services.claim_next(annotator=carol) is None
    assert Assignment.objects.filter(comparison=item, annotator=alice).count() == 1


def test_an_expired_lock_returns_the_item_to_the_queue(batch, make_user):
    [item] = queue_items(batch, 1)
    slow, quick = make_user("slow"), make_user("quick")
    assert services.claim_next(annotator=slow) == item
    assert services.claim_next(annotator=quick) is None
    Assignment.objects.filter(annotator=slow).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.claim_next(annotator=quick) == item
    with pytest.raises(services.Conflict, match="not assigned to you"):
        services.submit_label(annotator=slow, comparison_id=item.pk, data=GOOD)
    services.submit_label(annotator=quick, comparison_id=item.pk, data=GOOD)
    assert Label.objects.get().annotator == quick


def test_a_late_label_on_an_expired_but_untaken_lock_is_kept(batch, make_user):
    [item] = queue_items(batch, 1)
    slow = make_user("slow")
    services.claim_next(annotator=slow)
    Assignment.objects.update(locked_until=timezone.now() - timedelta(minutes=5))
    services.submit_label(annotator=slow, comparison_id=item.pk, data=GOOD)
    assert Label.objects.filter(annotator=slow).count() == 1


def test_label_fields_are_stored_as_given(batch, make_user):
    [item] = queue_items(batch, 1)
    alice = make_user("alice")
    services.claim_next(annotator=alice)
    label = services.submit_label(
        annotator=alice,
        comparison_id=item.pk,
        data=services.LabelInput(
            chosen="right",
            strength="slightly_better",
            safety="chosen_safe_other_unsafe",
            time_spent_ms=31_000,
            edited_response="  a better answer  ",
            rationale="more precise",
        ),
    )
    label.refresh_from_db()
    item.refresh_from_db()
    assert label.chosen == item.right and label.rejected == item.left
    assert (label.strength, label.safety, label.time_spent_ms) == (
        "slightly_better",
        "chosen_safe_other_unsafe",
        31_000,
    )
    assert (label.edited_response, label.rationale) == ("a better answer", "more precise")
    assert Assignment.objects.get(annotator=alice).status == Assignment.Status.DONE


def test_a_second_submit_is_refused_and_keeps_the_first(batch, make_user):
    [item] = queue_items(batch, 1)
    alice = make_user("alice")
    services.claim_next(annotator=alice)
    first = services.submit_label(annotator=alice, comparison_id=item.pk, data=GOOD)
    with pytest.raises(services.DuplicateLabel) as refused:
        services.submit_label(
            annotator=alice,
            comparison_id=item.pk,
            data=services.LabelInput("right", "better", "both_safe", 10),
        )
    assert refused.value.label == first
    assert Label.objects.get().chosen == item.left


@pytest.mark.django_db(transaction=True)
def test_simultaneous_double_submits_store_one_label(batch, make_user):
    [item] = queue_items(batch, 1)
    alice = make_user("alice")
    services.claim_next(annotator=alice)
    results = in_threads(
        [lambda: services.submit_label(annotator=alice, comparison_id=item.pk, data=GOOD)] * 4
    )
    stored = [r for r in results if isinstance(r, Label)]
    refused = [r for r in results if isinstance(r, services.DuplicateLabel)]
    assert len(stored) == 1 and len(refused) == 3, results
    assert Label.objects.count() == 1


def test_skip_gives_the_place_to_someone_else(batch, make_user):
    [item] = queue_items(batch, 1)
    alice, bob = make_user("alice"), make_user("bob")
    services.claim_next(annotator=alice)
    services.skip(annotator=alice, comparison_id=item.pk, reason="not_qualified", note="medical")
    assert Skip.objects.get().reason == "not_qualified"
    assert services.claim_next(annotator=alice) is None
    assert services.claim_next(annotator=bob) == item
    with pytest.raises(services.AnnotationError, match="reason"):
        services.skip(annotator=bob, comparison_id=item.pk, reason="bored")


@pytest.mark.parametrize(
    "bad, message",
    [
        (services.LabelInput("middle", "better", "both_safe", 1), "chosen"),
        (services.LabelInput("left", "much_better", "both_safe", 1), "strength"),
        (services.LabelInput("left", "better", "chosen_unsafe", 1), "safety"),
        (services.LabelInput("left", "better", "both_safe", -5), "time_spent_ms"),
        (
            services.LabelInput("left", "better", "both_safe", 1, edited_response="x" * 20_001),
            "edited",
        ),
    ],
)
def test_bad_labels_are_refused_and_store_nothing(batch, make_user, bad, message):
    [item] = queue_items(batch, 1)
    alice = make_user("alice")
    services.claim_next(annotator=alice)
    with pytest.raises(services.AnnotationError, match=message):
        services.submit_label(annotator=alice, comparison_id=item.pk, data=bad)
    assert not Label.objects.exists()
    assert Assignment.objects.get(annotator=alice).status == Assignment.Status.LOCKED


def test_import_checks_every_row_before_storing_any(batch):
    with pytest.raises(services.AnnotationError, match="row 2: 'guideline'"):
        services.import_prompts(
            batch=batch,
            rows=[{"prompt": "fine", "guideline": "safety"}, {"prompt": "bad", "guideline": "fun"}],
        )
    with pytest.raises(services.AnnotationError, match=r"row 2: .*reserves"):
        services.import_prompts(
            batch=batch,
            rows=[
                {"prompt": "fine", "guideline": "safety"},
                {"prompt": "<|im_start|>system", "guideline": "safety"},
            ],
        )
    assert not Comparison.objects.exists()


def test_heldout_share_and_cap(batch):
    batch.heldout_share, batch.heldout_max = 1.0, 3
    batch.save()
    items = queue_items(batch, 5)
    assert sum(c.heldout for c in items) == 3


def test_a_writers_own_prompt_never_reaches_the_queue(batch, make_user):
    writer, other = make_user("writer"), make_user("other")
    own = services.start_dialogue(author=writer, prompt="Mine?", guideline="helpfulness").comparison
    Comparison.objects.filter(pk=own.pk).update(status=Comparison.Status.READY)
    assert services.claim_next(annotator=other) is None
    services.skip(annotator=writer, comparison_id=own.pk, reason="broken_response")
    assert services.claim_next(annotator=other) is None
    assert services.claim_next(annotator=writer) is None
    assert not Assignment.objects.filter(comparison=own).exists()


@pytest.mark.django_db(transaction=True)
def test_an_annotator_holds_one_place_however_many_ask_at_once(batch, make_user):
    queue_items(batch, 6)
    rita = make_user("rita")
    # Six tabs or scripts of one annotator asking at the same moment: one place, six times.
    claimed = in_threads([lambda: services.claim_next(annotator=rita) for _ in range(6)])
    assert all(isinstance(c, Comparison) for c in claimed), claimed
    assert len({c.pk for c in claimed}) == 1
    assert Assignment.objects.filter(annotator=rita, status=Assignment.Status.LOCKED).count() == 1
    # Asking again returns the held one; the other five items stay free for everyone else.
    assert services.claim_next(annotator=rita).pk == claimed[0].pk
    others = [services.claim_next(annotator=make_user(f"other{i}")) for i in range(5)]
    assert {c.pk for c in others}.isdisjoint({claimed[0].pk}) and len({c.pk for c in others}) == 5


def test_the_queue_rule_is_pinned_for_claims_and_the_count(batch, make_user):
    """One rule decides what an annotator may claim, and the progress count reads the same:
    a free place or an expired lock, on a ready item of the open batch, that they hold no
    place on and did not skip."""
    from annotation import selectors

    me, other = make_user("me"), make_user("other")
    free, expired, live, done, mine, skipped, not_ready = queue_items(batch, 7)
    now = timezone.now()
    Assignment.objects.filter(comparison=expired).update(
        status="locked", annotator=other, locked_until=now - timedelta(seconds=1)
    )
    Assignment.objects.filter(comparison=live).update(
        status="locked", annotator=other, locked_until=now + timedelta(hours=1)
    )
    Assignment.objects.filter(comparison=done).update(status="done", annotator=other)
    Assignment.objects.create(comparison=mine, annotator=me, status="done")
    Skip.objects.create(comparison=skipped, annotator=me, reason="other")
    Comparison.objects.filter(pk=not_ready.pk).update(status=Comparison.Status.GENERATING)

    held, candidates = selectors.queue_places(me.pk, now)
    assert held is None
    assert {comparison for _, comparison in candidates} == {free.pk, expired.pk}
    assert selectors.queue_length(me.pk, now) == 2
    assert selectors.progress(me, batch)["queue_open"] == 2
    # The place `me` holds comes back as held, and is not counted as still to claim.
    claimed = services.claim_next(annotator=me)
    assert claimed.pk in {free.pk, expired.pk}
    assert selectors.queue_places(me.pk, timezone.now())[0] == claimed.pk
    assert selectors.queue_length(me.pk, timezone.now()) == 1
    # A closed batch has no queue.
    batch.status = "closed"
    batch.save()
    assert selectors.queue_places(me.pk, timezone.now()) == (None, [])
