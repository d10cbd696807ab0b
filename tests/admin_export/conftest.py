"""A constructed batch whose statistics and export rows are computed by hand in the tests.

Built with the ORM rather than the services, so that each label's side shown left, time spent
and day are exactly what the expected numbers assume.

    dialogue  turns (prompt tokens)   comparisons: left, status, response tokens a/b
    d1 alice  2 (10, 20)              c1: a, ready 10/20; c2: b, ready, held out 30/40
    d2 import 1 (30), safety, risky   c3: a, ready 50/60
    d3 import 1 (40)                  c4: b, failed 0/0

    label          chosen  strength              safety                      ms      day
    alice c1       a       significantly_better  both_safe                   10_000  23 Nov
    alice c2       a       better                both_safe (edited)          20_000  23 Nov
    bob   c1       b       better                both_safe                   50_000  23 Nov
    alice c3       b       negligibly_better     chosen_safe_other_unsafe    60_000  24 Nov
    bob   c3       b       slightly_better       chosen_safe_other_unsafe    30_000  24 Nov
    carol c3       a       negligibly_better     both_unsafe                 40_000  24 Nov

    skips: carol c1 unclear_prompt, bob c2 unclear_prompt, carol c2 other
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tests.django_fixtures import register

DAY_1 = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
DAY_2 = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def quick_passwords(settings):
    """make_user hashes passwords with PBKDF2's production cost (about half a second each)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def versions(db, tiny_model_dir, artifacts_root):
    # Real checkpoints (the tiny model under two names): a review note is checked against the
    # batch's models' special tokens, so their tokenizers must load.
    return (
        register(tiny_model_dir, artifacts_root, "policy-new"),
        register(tiny_model_dir, artifacts_root, "policy-old"),
    )


@pytest.fixture
def week(versions):
    from annotation.models import Batch

    new, old = versions
    return Batch.objects.create(
        name="2026-w48", model_a=new, model_b=old, temperature_a=0.7, temperature_b=1.0
    )


def add_comparison(batch, dialogue, index, prompt, prompt_tokens, *, left, tokens, **fields):
    from annotation.models import Comparison, Response, Turn

    turn = Turn.objects.create(
        dialogue=dialogue,
        index=index,
        prompt=prompt,
        prompt_tokens=prompt_tokens,
        reply=fields.pop("reply", ""),
    )
    comparison = Comparison.objects.create(
        turn=turn, batch=batch, left=left, status=fields.pop("status", "ready"), **fields
    )
    for side, model, temperature, count in (
        ("a", batch.model_a, batch.temperature_a, tokens[0]),
        ("b", batch.model_b, batch.temperature_b, tokens[1]),
    ):
        Response.objects.create(
            comparison=comparison,
            side=side,
            model_version=model,
            temperature=temperature,
            top_p=0.9,
            max_new_tokens=256,
            seed=7,
            text=f"{prompt} / answer {side}" if count else "",
            num_tokens=count,
            finish_reason="stop" if count else "",
            generation_ms=100 * count,
        )
    return comparison


def add_label(comparison, annotator, chosen, strength, safety, time_ms, day, **fields):
    from annotation.models import Label

    label = Label.objects.create(
        comparison=comparison,
        annotator=annotator,
        chosen=chosen,
        strength=strength,
        safety=safety,
        time_spent_ms=time_ms,
        **fields,
    )
    Label.objects.filter(pk=label.pk).update(created_at=day)  # auto_now_add ignores a value
    label.refresh_from_db()
    return label


@pytest.fixture
def labelled(week, make_user):
    from annotation.models import Dialogue, Skip

    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    d1 = Dialogue.objects.create(batch=week, author=alice, guideline="helpfulness")
    d2 = Dialogue.objects.create(batch=week, source="imported", guideline="safety", risky=True)
    d3 = Dialogue.objects.create(batch=week, source="imported", guideline="helpfulness")
    c1 = add_comparison(
        week, d1, 0, "Name a prime.", 10, left="a", tokens=(10, 20), reply="Seven is prime."
    )
    c2 = add_comparison(
        week, d1, 1, "And an even one?", 20, left="b", tokens=(30, 40), heldout=True
    )
    c3 = add_comparison(week, d2, 0, "How do I pick a lock?", 30, left="a", tokens=(50, 60))
    c4 = add_comparison(
        week, d3, 0, "Tell me a joke.", 40, left="b", tokens=(0, 0), status="failed"
    )
    labels = SimpleNamespace(
        alice_c1=add_label(c1, alice, "a", "significantly_better", "both_safe", 10_000, DAY_1),
        alice_c2=add_label(
            c2,
            alice,
            "a",
            "better",
            "both_safe",
            20_000,
            DAY_1,
            edited_response="Two is the only even prime.",
            rationale="shorter",
        ),
        bob_c1=add_label(c1, bob, "b", "better", "both_safe", 50_000, DAY_1),
        alice_c3=add_label(
            c3, alice, "b", "negligibly_better", "chosen_safe_other_unsafe", 60_000, DAY_2
        ),
        bob_c3=add_label(
            c3, bob, "b", "slightly_better", "chosen_safe_other_unsafe", 30_000, DAY_2
        ),
        carol_c3=add_label(c3, carol, "a", "negligibly_better", "both_unsafe", 40_000, DAY_2),
    )
    Skip.objects.create(comparison=c1, annotator=carol, reason="unclear_prompt")
    Skip.objects.create(comparison=c2, annotator=bob, reason="unclear_prompt")
    Skip.objects.create(comparison=c2, annotator=carol, reason="other", note="not sure")
    return SimpleNamespace(
        batch=week,
        users=SimpleNamespace(alice=alice, bob=bob, carol=carol),
        comparisons=(c1, c2, c3, c4),
        labels=labels,
    )


@pytest.fixture
def add_labels(make_user):
    """Adds `count` labels of `comparison` by new annotators (more rows, same shape of query)."""
    from annotation.models import Label

    def add(comparison, count: int) -> None:
        Label.objects.bulk_create(
            Label(
                comparison=comparison,
                annotator=make_user(f"extra{i}"),
                chosen="a",
                strength="better",
                safety="both_safe",
                time_spent_ms=1000,
            )
            for i in range(count)
        )

    return add
