"""Fixtures for the annotator's pages: comparisons whose responses are already written (the
generation is not what most page tests are about), and logging in through the login page."""

from __future__ import annotations

import pytest
from django.utils import timezone

from annotation.models import (
    Assignment,
    Comparison,
    Dialogue,
    Guideline,
    Response,
    Side,
    Turn,
)


def ready_comparison(
    batch,
    *,
    prompt: str,
    left: str,
    right: str,
    author=None,
    earlier: tuple[tuple[str, str], ...] = (),
    places: int = 1,
) -> Comparison:
    """A READY comparison written straight into the database. With `author` it is the next turn
    of their own dialogue (after `earlier` (prompt, reply) turns), locked to them; without, an
    imported queue item with `places` open assignments. Side b is shown on the left, so tests
    see the shown/stored mapping at work."""
    dialogue = Dialogue.objects.create(
        batch=batch,
        author=author,
        source=Dialogue.Source.WRITTEN if author else Dialogue.Source.IMPORTED,
        guideline=Guideline.HELPFULNESS,
    )
    for index, (earlier_prompt, reply) in enumerate(earlier):
        Turn.objects.create(
            dialogue=dialogue, index=index, prompt=earlier_prompt, prompt_tokens=1, reply=reply
        )
    turn = Turn.objects.create(
        dialogue=dialogue, index=len(earlier), prompt=prompt, prompt_tokens=1
    )
    comparison = Comparison.objects.create(
        turn=turn,
        batch=batch,
        left=Side.B,
        status=Comparison.Status.READY,
        ready_at=timezone.now(),
        context_tokens=10,
    )
    for side, text in ((Side.B, left), (Side.A, right)):
        Response.objects.create(
            comparison=comparison,
            side=side,
            model_version=batch.model_a,
            temperature=0.7,
            top_p=0.9,
            max_new_tokens=8,
            seed=1,
            text=text,
            num_tokens=3,
            finish_reason="stop",
        )
    if author is not None:
        Assignment.objects.create(
            comparison=comparison, annotator=author, status=Assignment.Status.LOCKED
        )
    else:
        Assignment.objects.bulk_create(Assignment(comparison=comparison) for _ in range(places))
    return comparison


def log_in(page, live_server, user, *, next_path: str = "/") -> None:
    """Log in through the login page, as a person would; lands on `next_path`."""
    page.goto(f"{live_server.url}{next_path}")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(f"{user.username}-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.fixture
def annotator(make_user):
    return make_user("ann", "annotator")
