"""The annotator's pages without a browser: who may see them, CSRF on every write, the home page's
guidelines and progress, and prompt forms that refuse bad input without storing anything."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from annotation.models import Comparison, Dialogue, Label, Skip
from tests.frontend.conftest import ready_comparison


def test_root_redirects_to_the_annotation_home(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("frontend:home") == "/annotate/"


def test_pages_ask_anonymous_visitors_to_log_in(client, db):
    response = client.get("/annotate/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/annotate/")
    login = client.get(response["Location"])
    assert login.status_code == 200
    assert b'name="username"' in login.content and b'name="password"' in login.content


def test_logging_in_lands_on_the_annotation_home(client, batch, annotator):
    response = client.post(
        "/accounts/login/", {"username": "ann", "password": "ann-password"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/annotate/"
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["reviewer", "researcher", None])
def test_someone_who_is_not_an_annotator_gets_a_clear_403(client, batch, make_user, role):
    outsider = make_user("outsider", role) if role else make_user("outsider")
    if role is None:
        outsider.groups.clear()  # logged in, in no role at all
    client.force_login(outsider)
    home = client.get("/annotate/")
    assert home.status_code == 403
    assert b"You are not an annotator" in home.content
    item = ready_comparison(batch, prompt="Hi", left="a", right="b")
    assert client.get(f"/annotate/comparisons/{item.pk}/").status_code == 403
    assert client.post("/annotate/queue/").status_code == 403
    assert (
        client.post(
            "/annotate/dialogues/", {"prompt": "Hello", "guideline": "helpfulness"}
        ).status_code
        == 403
    )
    assert not Dialogue.objects.filter(author=outsider).exists()


def test_staff_count_as_annotators(client, batch, make_user):
    client.force_login(make_user("boss", "researcher", staff=True))
    assert client.get("/annotate/").status_code == 200


def test_home_shows_guidelines_progress_and_the_forms(client, batch, annotator, make_user):
    client.force_login(annotator)
    ready_comparison(batch, prompt="queued", left="x", right="y")  # one queue item for them
    mine = ready_comparison(batch, prompt="mine", left="x", right="y", author=annotator)
    Label.objects.create(
        comparison=mine,
        annotator=annotator,
        chosen="a",
        strength="better",
        safety="both_safe",
        time_spent_ms=90_000,
    )
    other = ready_comparison(batch, prompt="skipped", left="x", right="y", author=annotator)
    Skip.objects.create(comparison=other, annotator=annotator, reason="other")
    page = client.get("/annotate/").content.decode()
    for text in (
        "Helpfulness",
        "Safety",
        "significantly better",
        "negligibly better / unsure",
        "chosen is safe, the other is not",
        "both are safe",
        "both are unsafe",
        'name="guideline"',
        'name="risky"',
        "Work the queue",
        "test-week",
    ):
        assert text in page, text
    assert '<dd id="stat-labels">1</dd>' in page
    assert '<dd id="stat-minutes">1.5</dd>' in page
    assert '<dd id="stat-skips">1</dd>' in page
    assert '<dd id="stat-dialogues">2</dd>' in page
    assert '<dd id="stat-queue">1</dd>' in page


def test_writing_a_prompt_starts_a_dialogue_and_opens_its_comparison(client, batch, annotator):
    client.force_login(annotator)
    response = client.post(
        "/annotate/dialogues/",
        {"prompt": "  How do tides work?  ", "guideline": "safety", "risky": "on"},
    )
    comparison = Comparison.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/annotate/comparisons/{comparison.pk}/"
    dialogue = comparison.turn.dialogue
    assert (dialogue.author, dialogue.guideline, dialogue.risky) == (annotator, "safety", True)
    assert comparison.turn.prompt == "How do tides work?"
    page = client.get(response["Location"]).content.decode()
    assert "How do tides work?" in page and "safety guideline" in page


def test_a_prompt_form_sent_twice_writes_one_dialogue(client, batch, annotator):
    client.force_login(annotator)
    home = client.get("/annotate/").content.decode()
    key = re.search(r'name="request_key" value="([0-9a-f]{32})"', home).group(1)
    form = {"prompt": "Why is the sky blue?", "guideline": "helpfulness", "request_key": key}
    first = client.post("/annotate/dialogues/", form)
    again = client.post("/annotate/dialogues/", form)  # a double click, a browser resend
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"]
    assert Dialogue.objects.count() == 1
    # Each rendering of the form carries a fresh key: a new prompt is a new dialogue.
    assert key not in client.get("/annotate/").content.decode()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"prompt": "   ", "guideline": "helpfulness"}, "This field is required."),
        ({"prompt": "Hi", "guideline": "poetry"}, "Select a valid choice."),
        ({"prompt": "x" * 4001, "guideline": "helpfulness"}, "at most 4000 characters"),
    ],
)
def test_a_bad_prompt_form_is_shown_again_with_the_error_and_stores_nothing(
    client, batch, annotator, data, message
):
    client.force_login(annotator)
    response = client.post("/annotate/dialogues/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Dialogue.objects.exists()


def test_no_open_batch_is_explained_on_the_home_page(client, batch, annotator):
    batch.status = "closed"
    batch.save()
    client.force_login(annotator)
    page = client.get("/annotate/").content.decode()
    assert "no batch is open" in page
    response = client.post("/annotate/dialogues/", {"prompt": "Hi", "guideline": "helpfulness"})
    assert response.status_code == 400 and "no batch is open" in response.content.decode()


def test_a_post_without_the_csrf_token_is_refused(batch, annotator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(annotator)
    item = ready_comparison(batch, prompt="Hi", left="a", right="b", author=annotator)
    refused = [
        browser.post("/annotate/dialogues/", {"prompt": "Hi", "guideline": "helpfulness"}),
        browser.post("/annotate/queue/"),
        browser.post(f"/annotate/comparisons/{item.pk}/skip/", {"reason": "other"}),
        browser.post(
            f"/annotate/api/comparisons/{item.pk}/label/",
            {"chosen": "left", "strength": "better", "safety": "both_safe", "time_spent_ms": 5},
            content_type="application/json",
        ),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert Dialogue.objects.count() == 1 and not Label.objects.exists()
    assert not Skip.objects.exists()
    # The same requests with the token from the page go through.
    browser.get("/annotate/")
    token = browser.cookies["csrftoken"].value
    accepted = browser.post(
        f"/annotate/api/comparisons/{item.pk}/label/",
        {"chosen": "left", "strength": "better", "safety": "both_safe", "time_spent_ms": 5},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert accepted.status_code == 201
    assert Label.objects.get().chosen == item.left


def test_skipping_needs_a_known_reason(client, batch, annotator):
    client.force_login(annotator)
    item = ready_comparison(batch, prompt="Hi", left="a", right="b", author=annotator)
    response = client.post(f"/annotate/comparisons/{item.pk}/skip/", {"reason": "bored"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Skip.objects.exists()


def test_continuing_a_dialogue_needs_the_last_turn_labelled_and_a_prompt(
    client, batch, annotator, make_user
):
    from annotation import services

    client.force_login(annotator)
    item = ready_comparison(batch, prompt="Hi", left="Hello!", right="Hey.", author=annotator)
    url = f"/annotate/dialogues/{item.turn.dialogue_id}/turns/"
    early = client.post(url, {"prompt": "And then?"})
    assert early.status_code == 400
    assert "label the last turn before continuing" in early.content.decode()

    services.submit_label(
        annotator=annotator,
        comparison_id=item.pk,
        data=services.LabelInput(
            chosen="right", strength="better", safety="both_safe", time_spent_ms=1000
        ),
    )
    empty = client.post(url, {"prompt": "  "})
    assert empty.status_code == 400 and "This field is required." in empty.content.decode()

    response = client.post(url, {"prompt": "And then?"})
    following = Comparison.objects.get(turn__dialogue=item.turn.dialogue, turn__index=1)
    assert response["Location"] == f"/annotate/comparisons/{following.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "Hey." in page and "And then?" in page  # the chosen reply is the context

    # Someone else's dialogue cannot be continued.
    client.force_login(make_user("other", "annotator"))
    assert client.post(url, {"prompt": "Mine now"}).status_code == 404
