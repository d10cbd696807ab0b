"""The annotator's pages in Chromium: hostile text shown as text, drafts that survive closing the
page, keyboard and mouse labelling, double submits, skipping in queue mode.

Comparisons here are written straight into the database as READY (tests/frontend/conftest.py):
these tests are about the pages, the acceptance test (test_annotator_e2e.py) about generation.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from annotation.models import Assignment, Comparison, Label, Response, Skip
from tests.frontend.conftest import log_in, ready_comparison

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

READY = re.compile("Both responses are ready")


def watch_for_trouble(page) -> list[str]:
    """Dialogs, page errors and console errors, as they happen."""
    trouble: list[str] = []

    def on_dialog(dialog):
        trouble.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: trouble.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            trouble.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    return trouble


def test_hostile_prompts_and_responses_are_shown_as_text(page, live_server, batch, annotator):
    hostile = {
        "earlier prompt": "<script>window.__pwned = 'earlier prompt'; alert(1)</script>",
        "earlier reply": "<img src=x onerror=\"window.__pwned = 'earlier reply'; alert(2)\">",
        "prompt": "Repeat after me: <script>alert('prompt')</script><b>bold?</b>",
        "left": "<img src=x onerror=\"window.__pwned = 'left'; alert('left')\">Sure!",
        "right": "</div><script>alert('right')</script><iframe src=javascript:alert(3)>",
    }
    item = ready_comparison(
        batch,
        prompt=hostile["prompt"],
        left=hostile["left"],
        right=hostile["right"],
        author=annotator,
        earlier=((hostile["earlier prompt"], hostile["earlier reply"]),),
    )
    trouble = watch_for_trouble(page)
    log_in(page, live_server, annotator, next_path=f"/annotate/comparisons/{item.pk}/")
    expect(page.locator("#generation-status")).to_have_text(READY)

    main = page.locator("#comparison")
    expect(page.locator("#prompt")).to_have_text(hostile["prompt"])
    expect(page.locator("#text-left")).to_have_text(hostile["left"])
    expect(page.locator("#text-right")).to_have_text(hostile["right"])
    expect(page.locator(".dialogue .message.user .text").first).to_have_text(
        hostile["earlier prompt"]
    )
    expect(page.locator(".dialogue .message.assistant .text")).to_have_text(
        hostile["earlier reply"]
    )
    # Nothing was parsed into elements, nothing ran.
    assert main.locator("script, img, iframe, b").count() == 0
    page.wait_for_timeout(300)  # time for a broken image's onerror, were there one
    assert page.evaluate("window.__pwned") is None
    assert trouble == []

    # The hostile text also goes through labelling and an edit unharmed.
    page.keyboard.press("1")
    page.keyboard.press("a")
    page.keyboard.press("z")
    page.keyboard.press("e")
    page.keyboard.press("Control+End")
    page.keyboard.type("<script>alert('edit')</script>")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator("#done-summary")).to_contain_text("Label saved")
    label = Label.objects.get(comparison=item, annotator=annotator)
    assert label.edited_response == hostile["left"] + "<script>alert('edit')</script>"
    assert trouble == []


def test_drafts_survive_closing_the_page_and_are_cleared_on_submit(
    page, live_server, batch, annotator
):
    context = page.context
    log_in(page, live_server, annotator)
    # A prompt being written, with its guideline and risky flag.
    page.get_by_label("Prompt", exact=True).fill("How would someone pick a lock?")
    page.get_by_label("safety", exact=True).check()
    page.get_by_role("checkbox", name=re.compile("risky")).check()
    page.close()
    page = context.new_page()
    page.goto(f"{live_server.url}/annotate/")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("How would someone pick a lock?")
    expect(page.get_by_label("safety", exact=True)).to_be_checked()
    expect(page.get_by_role("checkbox", name=re.compile("risky"))).to_be_checked()

    # Label choices and an edit in progress.
    item = ready_comparison(
        batch, prompt="Name a fruit.", left="Apple.", right="A banana.", author=annotator
    )
    url = f"{live_server.url}/annotate/comparisons/{item.pk}/"
    page.goto(url)
    expect(page.locator("#generation-status")).to_have_text(READY)
    for key in ("2", "d", "x", "e"):
        page.keyboard.press(key)
    expect(page.locator("#edit-text")).to_be_focused()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Ripe.")
    page.close()

    page = context.new_page()
    page.goto(url)
    expect(page.locator("#generation-status")).to_have_text(READY)
    right = page.locator('button[data-field="chosen"][data-value="right"]')
    expect(right).to_have_attribute("aria-pressed", "true")
    expect(page.locator('button[data-value="slightly_better"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.locator('button[data-value="both_safe"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#edit-text")).to_have_value("A banana. Ripe.")
    expect(page.locator("#label-missing")).to_have_text("Ready to submit: press Enter.")
    page.keyboard.press("Enter")
    expect(page.locator("#done-summary")).to_contain_text("Label saved")

    label = Label.objects.get(comparison=item, annotator=annotator)
    assert label.chosen == item.right == "a"  # shown on the right, stored as side a
    assert (label.strength, label.safety) == ("slightly_better", "both_safe")
    assert label.edited_response == "A banana. Ripe."
    assert label.time_spent_ms > 0
    assert page.evaluate(f"localStorage.getItem('tandem:label:{item.pk}')") is None
    # The next prompt of this dialogue is a draft of its own.
    expect(page.locator("#continue-prompt")).to_be_focused()
    page.keyboard.type("Which is sweeter?")
    page.reload()
    expect(page.locator("#continue-prompt")).to_have_value("Which is sweeter?")


def test_labelling_with_the_mouse_sends_once_and_a_second_tab_is_told_gracefully(
    page, live_server, batch, annotator
):
    item = ready_comparison(batch, prompt="Say hi.", left="Hi!", right="Hello.", author=annotator)
    url = f"/annotate/comparisons/{item.pk}/"
    log_in(page, live_server, annotator, next_path=url)
    second = page.context.new_page()  # the same comparison open in another tab
    second.goto(f"{live_server.url}{url}")
    expect(page.locator("#generation-status")).to_have_text(READY)

    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    submit = page.locator("#submit-label")
    expect(submit).to_be_disabled()
    expect(page.locator("#label-missing")).to_contain_text("which response is better")
    page.get_by_role("button", name=re.compile("This one is better")).first.click()
    page.get_by_role("button", name=re.compile("^significantly better")).click()
    expect(page.locator("#label-missing")).to_have_text(
        "Still needed: the safety label (Z, X or C)."
    )
    page.get_by_role("button", name=re.compile("^both are unsafe")).click()
    submit.dblclick()
    expect(page.locator("#done-summary")).to_contain_text("Label saved")
    assert [u for u in posts if u.endswith(f"/comparisons/{item.pk}/label/")] == [
        f"{live_server.url}/annotate/api/comparisons/{item.pk}/label/"
    ]
    label = Label.objects.get(comparison=item, annotator=annotator)
    assert (label.chosen, label.strength, label.safety) == (
        item.left,
        "significantly_better",
        "both_unsafe",
    )
    assert label.edited_response == ""

    # The other tab still shows the form; its submit meets the server's 409.
    for key in ("2", "f", "x", "Enter"):
        second.keyboard.press(key)
    expect(second.locator("#done-summary")).to_have_text(
        "You had already labelled this comparison: your first label is kept."
    )
    assert Label.objects.filter(comparison=item).count() == 1
    assert Label.objects.get(comparison=item).strength == "significantly_better"


def test_queue_mode_skips_with_a_reason_and_moves_on(page, live_server, batch, annotator):
    first = ready_comparison(batch, prompt="Queued one?", left="One.", right="Uno.")
    second = ready_comparison(batch, prompt="Queued two?", left="Two.", right="Dos.")
    log_in(page, live_server, annotator)
    expect(page.locator("#stat-queue")).to_have_text("2")
    page.get_by_role("button", name="Work the queue").click()
    page.wait_for_url(re.compile(r"/annotate/comparisons/\d+/$"))
    shown = int(page.url.rstrip("/").rsplit("/", 1)[1])
    other = second if shown == first.pk else first
    expect(page.locator("#generation-status")).to_have_text(READY)

    page.keyboard.press("k")
    expect(page.locator("#skip-reason")).to_be_focused()
    page.locator("#skip-reason").select_option("broken_response")
    page.locator("#skip-note").fill("cut off mid-word")
    page.get_by_role("button", name="Skip", exact=True).click()
    page.wait_for_url(f"{live_server.url}/annotate/comparisons/{other.pk}/")
    expect(page.locator(".messages")).to_contain_text("Skipped")
    skipped = Skip.objects.get(annotator=annotator)
    assert (skipped.comparison_id, skipped.reason, skipped.note) == (
        shown,
        "broken_response",
        "cut off mid-word",
    )
    # Its place went back to the queue for someone else.
    assert Assignment.objects.get(comparison_id=shown).annotator is None

    # Labelled with the keys, the last item leads to an empty queue.
    expect(page.locator("#prompt")).to_have_text(other.turn.prompt)
    expect(page.locator("#generation-status")).to_have_text(READY)
    for key in ("ArrowRight", "s", "x", "Enter"):
        page.keyboard.press(key)
    page.wait_for_url(f"{live_server.url}/annotate/")
    expect(page.locator(".messages")).to_contain_text("The queue is empty for you")
    assert Label.objects.get(annotator=annotator).comparison_id == other.pk
    expect(page.locator("#stat-labels")).to_have_text("1")
    expect(page.locator("#stat-skips")).to_have_text("1")


def test_the_comparison_screen_works_on_a_narrow_screen(page, live_server, batch, annotator):
    item = ready_comparison(
        batch, prompt="Hi?", left="Left answer.", right="Right.", author=annotator
    )
    page.set_viewport_size({"width": 375, "height": 740})
    log_in(page, live_server, annotator, next_path=f"/annotate/comparisons/{item.pk}/")
    expect(page.locator("#generation-status")).to_have_text(READY)
    left, right = (
        page.locator("#response-left").bounding_box(),
        page.locator("#response-right").bounding_box(),
    )
    assert right["y"] >= left["y"] + left["height"]  # stacked, not squeezed side by side
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_role("button", name=re.compile("This one is better")).last.click()
    expect(page.locator("#response-right")).to_have_class(re.compile("chosen"))


def test_the_screen_follows_generation_by_polling_and_shows_a_failure(
    page, live_server, batch, annotator
):
    """The worker's writes are played by hand here: pending, then text growing, then ready."""
    item = ready_comparison(batch, prompt="Count to three.", left="", right="", author=annotator)
    Comparison.objects.filter(pk=item.pk).update(status=Comparison.Status.PENDING)
    Response.objects.filter(comparison=item).update(finish_reason="")
    status = page.locator("#generation-status")
    log_in(page, live_server, annotator, next_path=f"/annotate/comparisons/{item.pk}/")
    expect(status).to_have_text(re.compile("Waiting for a worker"))
    expect(page.locator('button[data-value="left"]')).to_be_disabled()
    page.keyboard.press("1")  # too early: nothing is chosen
    expect(page.locator("#label-missing")).to_have_text("The responses are still being generated.")

    Comparison.objects.filter(pk=item.pk).update(status=Comparison.Status.GENERATING)
    Response.objects.filter(comparison=item, side=item.left).update(text="One, two")
    expect(status).to_have_text("Generating the responses… (0 of 2 complete)")
    expect(page.locator("#text-left")).to_have_text("One, two")
    expect(page.locator("#writing-left")).to_be_visible()
    Response.objects.filter(comparison=item, side=item.left).update(
        text="One, two, three.", finish_reason="stop"
    )
    Response.objects.filter(comparison=item, side=item.right).update(text="1 2")
    expect(status).to_have_text("Generating the responses… (1 of 2 complete)")
    expect(page.locator("#text-left")).to_have_text("One, two, three.")
    expect(page.locator("#writing-left")).to_be_hidden()
    Response.objects.filter(comparison=item, side=item.right).update(
        text="1 2 3", finish_reason="stop"
    )
    Comparison.objects.filter(pk=item.pk).update(status=Comparison.Status.READY)
    expect(status).to_have_text(READY)
    expect(page.locator("#text-right")).to_have_text("1 2 3")
    expect(page.locator('button[data-value="left"]')).to_be_enabled()

    broken = ready_comparison(batch, prompt="Break.", left="", right="", author=annotator)
    Comparison.objects.filter(pk=broken.pk).update(
        status=Comparison.Status.FAILED, error="RuntimeError: out of memory"
    )
    page.goto(f"{live_server.url}/annotate/comparisons/{broken.pk}/")
    expect(page.locator("#generation-error")).to_contain_text("RuntimeError: out of memory")
    expect(page.locator("#labelling")).to_be_hidden()
    page.keyboard.press("k")
    page.locator("#skip-reason").select_option("broken_response")
    page.get_by_role("button", name="Skip", exact=True).click()
    page.wait_for_url(f"{live_server.url}/annotate/")
    assert Skip.objects.get(comparison=broken).reason == "broken_response"
