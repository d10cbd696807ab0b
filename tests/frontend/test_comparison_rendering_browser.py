"""The comparison screen in Chromium, under the Content-Security-Policy: responses rendered from
their Markdown (a script in one shown as text, never run), each side's progress and a cut-off
badge while the pair streams, and a failed pair generated again by a real worker on retry."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Comparison, Response
from tests.frontend.conftest import log_in, ready_comparison
from tests.frontend.test_annotator_browser import watch_for_trouble

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READY = re.compile("Both responses are ready")

MARKDOWN = (
    "Steps:\n\n1. Boil *water*\n2. Add **pasta**\n\n"
    "```python\nprint('<b>done</b>')\n```\n\n[docs](https://example.org/pasta)"
)
HOSTILE = (
    "<script>window.__pwned = 'script'</script> and "
    "<img src=x onerror=\"window.__pwned = 'img'\"> and [click](javascript:window.__pwned=1)"
)


def open_comparison(page, live_server, annotator, comparison: Comparison):
    trouble = watch_for_trouble(page)  # a CSP violation is a console error
    log_in(page, live_server, annotator, next_path=f"/annotate/comparisons/{comparison.pk}/")
    return trouble


def test_markdown_renders_as_elements_and_html_in_a_response_stays_text(
    page, live_server, batch, annotator
):
    item = ready_comparison(
        batch,
        prompt="How do I cook pasta?",
        left=MARKDOWN,
        right=HOSTILE,
        author=annotator,
        earlier=(("Say hi in a list.", "- *hi*\n- hello"),),
    )
    trouble = open_comparison(page, live_server, annotator, item)
    expect(page.locator("#generation-status")).to_have_text(READY)

    left = page.locator("#text-left")
    expect(left.locator("ol > li")).to_have_count(2)
    expect(left.locator("ol em")).to_have_text("water")
    expect(left.locator("ol strong")).to_have_text("pasta")
    expect(left.locator("pre code")).to_have_text("print('<b>done</b>')")
    link = left.locator("a")
    expect(link).to_have_attribute("href", "https://example.org/pasta")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    # The earlier turn's reply is rendered too; prompts stay plain text.
    expect(page.locator(".dialogue .message.assistant li em")).to_have_text("hi")

    right = page.locator("#text-right")
    expect(right).to_have_text(re.compile(re.escape("<script>window.__pwned = 'script'</script>")))
    # A javascript: link is no link at all: its Markdown shows as written.
    expect(right).to_contain_text("[click](javascript:window.__pwned=1)")
    # No element that could run code exists (no img for an onerror), so nothing can have run.
    assert right.locator("script, img, a").count() == 0
    assert page.evaluate("window.__pwned") is None

    for side in ("left", "right"):
        expect(page.locator(f"#state-{side}")).to_have_text("Complete (3 tokens).")
        expect(page.locator(f"#cut-off-{side}")).to_be_hidden()
    # The edit starts from the raw Markdown, which is what is stored.
    page.keyboard.press("1")
    page.keyboard.press("e")
    expect(page.locator("#edit-text")).to_have_value(MARKDOWN)
    assert trouble == []


def test_each_side_shows_its_progress_and_a_cut_off_response_is_marked(
    page, live_server, batch, annotator
):
    item = ready_comparison(batch, prompt="Count.", left="", right="", author=annotator)
    Comparison.objects.filter(pk=item.pk).update(status=Comparison.Status.GENERATING)
    left, right = (
        Response.objects.get(comparison=item, side=item.left),
        Response.objects.get(comparison=item, side=item.right),
    )
    Response.objects.filter(pk=left.pk).update(text="1, 2,", num_tokens=3, finish_reason="")
    Response.objects.filter(pk=right.pk).update(text="", num_tokens=0, finish_reason="")
    trouble = open_comparison(page, live_server, annotator, item)

    expect(page.locator("#generation-status")).to_have_text(re.compile("Generating"))
    expect(page.locator("#state-left")).to_have_text("Generating… 3 of 8 tokens")
    expect(page.locator("#writing-left")).to_be_visible()
    expect(page.locator("#writing-left")).to_have_attribute("value", "3")
    expect(page.locator("#state-right")).to_have_text("Waiting…")
    expect(page.locator("#writing-right")).to_be_hidden()

    # The left one reaches its budget; the right one stops by itself.
    Response.objects.filter(pk=left.pk).update(
        text="1, 2, 3, 4, 5, 6, 7, 8,", num_tokens=8, finish_reason="length"
    )
    Response.objects.filter(pk=right.pk).update(text="Done.", num_tokens=2, finish_reason="stop")
    Comparison.objects.filter(pk=item.pk).update(status=Comparison.Status.READY)
    expect(page.locator("#generation-status")).to_have_text(READY)
    expect(page.locator("#cut-off-left")).to_be_visible()
    expect(page.locator("#cut-off-left")).to_have_text("cut off")
    expect(page.locator("#writing-left")).to_be_hidden()
    expect(page.locator("#state-left")).to_have_text(
        "Cut off at 8 tokens: the length limit stopped it."
    )
    expect(page.locator("#cut-off-right")).to_be_hidden()
    expect(page.locator("#state-right")).to_have_text("Complete (2 tokens).")
    assert trouble == []


def test_retry_generates_a_failed_comparison_again(
    page, live_server, batch, annotator, celery_worker
):
    # The suite's one real worker: a second one on the same queue would race it for the
    # message, so which one samples (and whether a pause set on one is reached) would be chance.
    celery_worker.wait_ready()
    # Given up on, as the reconciler leaves a pair whose workers kept dying. Written straight
    # into the database: no message is sent for it before the retry.
    item = ready_comparison(batch, prompt="Name a colour.", left="", right="", author=annotator)
    Comparison.objects.filter(pk=item.pk).update(
        status=Comparison.Status.FAILED, error="WorkerLost: the worker died 3 times", attempts=3
    )
    Response.objects.filter(comparison=item).update(finish_reason="", num_tokens=0)
    trouble = open_comparison(page, live_server, annotator, item)
    expect(page.locator("#generation-status")).to_have_text("Generation failed.")
    expect(page.locator("#generation-error")).to_contain_text("the worker died 3 times")
    expect(page.locator("#labelling")).to_be_hidden()

    page.get_by_role("button", name="Generate the responses again").click()
    expect(page.locator("#generation-failed")).to_be_hidden()
    expect(page.locator("#generation-status")).to_have_text(READY, timeout=90_000)
    item.refresh_from_db()
    assert (item.status, item.error) == (Comparison.Status.READY, "")
    for side in ("left", "right"):
        expect(page.locator(f"#text-{side}")).not_to_be_empty()
        expect(page.locator(f"#state-{side}")).to_have_text(re.compile("^(Complete|Cut off)"))
    expect(page.locator("#labelling")).to_be_visible()
    assert trouble == []
