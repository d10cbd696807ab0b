"""Acceptance: the whole annotation path on the real stack.

Django's live server on a PostgreSQL test database, Redis as the broker, a real Celery worker
process sampling with the real SmolLM2-135M-Instruct, and Chromium. An annotator logs in, writes
a prompt, watches two responses stream in, labels them with the keyboard (editing the chosen
one), continues the dialogue, and the records in PostgreSQL are checked field by field.
"""

from __future__ import annotations

import re

import pytest
import torch
from playwright.sync_api import expect

from annotation.models import Batch, Comparison, Label, Turn
from modelcore.chat import Message
from modelcore.sampling import SamplingParams
from rlhf.serving import chat_format, sample_reply
from tests.django_fixtures import register
from tests.frontend.conftest import log_in

pytestmark = [pytest.mark.services, pytest.mark.browser, pytest.mark.smollm2]

MAX_NEW_TOKENS = 24
GENERATION_TIMEOUT_MS = 100_000

# Records what the comparison screen showed over time (status line, response lengths), so the
# test can tell that it showed progress before the responses were complete.
RECORD_SCREEN = """
window.__screens = [];
document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("comparison");
  if (!root) return;
  const snap = () => window.__screens.push({
    status: document.getElementById("generation-status").textContent,
    left: document.getElementById("text-left").textContent.length,
    right: document.getElementById("text-right").textContent.length,
  });
  snap();
  new MutationObserver(snap).observe(root, {subtree: true, childList: true, characterData: true});
});
"""


@pytest.fixture
def smollm2_batch(transactional_db, smollm2_model_dir, artifacts_root) -> Batch:
    version = register(smollm2_model_dir, artifacts_root, "smollm2-135m-instruct")
    return Batch.objects.create(
        name="e2e-week",
        model_a=version,
        model_b=version,
        temperature_a=0.7,
        temperature_b=1.0,
        max_new_tokens=MAX_NEW_TOKENS,
    )


def wait_for_responses(page) -> list[dict]:
    """Wait until both responses are complete; return what the screen showed on the way."""
    expect(page.locator("#generation-status")).to_have_text(
        re.compile("Both responses are ready"), timeout=GENERATION_TIMEOUT_MS
    )
    return page.evaluate("window.__screens")


def test_annotator_writes_labels_by_keyboard_and_continues_on_the_real_stack(
    page, live_server, celery_worker, smollm2_batch, annotator
):
    celery_worker.wait_ready()
    page.context.add_init_script(RECORD_SCREEN)
    log_in(page, live_server, annotator)  # "/" → login page → /annotate/
    assert page.url == f"{live_server.url}/annotate/"

    first_prompt = "What is the capital of France? Answer in one sentence."
    prompt_box = page.get_by_label("Prompt", exact=True)
    prompt_box.focus()
    page.keyboard.type(first_prompt)
    page.keyboard.press("Control+Enter")
    page.wait_for_url(re.compile(r"/annotate/comparisons/\d+/$"))
    first = Comparison.objects.get(turn__dialogue__author=annotator, turn__index=0)

    screens = wait_for_responses(page)
    # Progress was on screen before both responses were complete: waiting or generating, and
    # text that had arrived while the other response was still being written.
    progress = [s for s in screens if re.match("Waiting for a worker|Generating", s["status"])]
    assert progress, screens
    assert any(s["status"].startswith("Generating") and (s["left"] or s["right"]) for s in screens)
    left_text = page.locator("#text-left").text_content()
    right_text = page.locator("#text-right").text_content()
    first.refresh_from_db()
    assert first.status == Comparison.Status.READY
    assert left_text == first.response(first.left).text and left_text
    assert right_text == first.response(first.right).text and right_text

    # Keyboard only: right is better, "better", both safe, edit it, submit.
    for key in ("2", "s", "x", "e"):
        page.keyboard.press(key)
    expect(page.locator("#edit-text")).to_be_focused()
    page.keyboard.press("Control+End")
    page.keyboard.type(" Edited by a person.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator("#done-summary")).to_contain_text("Label saved")
    edited = f"{right_text} Edited by a person."

    # Continue the dialogue: the next prompt box has the focus.
    second_prompt = "And which river flows through it?"
    expect(page.locator("#continue-prompt")).to_be_focused()
    page.keyboard.type(second_prompt)
    page.keyboard.press("Control+Enter")
    page.wait_for_url(lambda url: not url.endswith(f"/comparisons/{first.pk}/"))
    expect(page.locator(".dialogue .message.user .text").first).to_have_text(first_prompt)
    expect(page.locator(".dialogue .message.assistant .text")).to_have_text(edited)
    expect(page.locator("#prompt")).to_have_text(second_prompt)
    wait_for_responses(page)

    # The records, in PostgreSQL.
    [label] = Label.objects.filter(comparison=first, annotator=annotator)
    assert label.chosen == first.right  # the side shown on the right, where "2" was pressed
    assert label.strength == "better" and label.safety == "both_safe"
    assert label.edited_response == edited
    assert label.rationale == ""
    assert 0 < label.time_spent_ms < 10 * 60_000
    assert Turn.objects.get(pk=first.turn_id).reply == edited

    second = Comparison.objects.get(turn__dialogue=first.turn.dialogue, turn__index=1)
    assert second.status == Comparison.Status.READY and second.error == ""
    assert second.turn.prompt == second_prompt
    messages = [
        Message("user", first_prompt),
        Message("assistant", edited),
        Message("user", second_prompt),
    ]
    assert second.context_tokens == len(chat_format(smollm2_batch.model_a).encode_prompt(messages))
    for response in second.responses.all():
        assert response.finish_reason in {"stop", "length"} and response.text
        assert 1 <= response.num_tokens <= MAX_NEW_TOKENS
        assert response.generation_ms and response.generation_ms > 0
    assert second.created_at > label.created_at
    # The worker sampled from that context: the recorded seed reproduces its text from the
    # dialogue with the edited reply (sampling is deterministic given the seed).
    response = second.response(second.right)
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker: one thread, the same reduction order
    try:
        text, _ = sample_reply(
            response.model_version,
            messages,
            SamplingParams(
                max_new_tokens=response.max_new_tokens,
                temperature=response.temperature,
                top_p=response.top_p,
                seed=response.seed,
            ),
            lambda text: None,
        )
    finally:
        torch.set_num_threads(torch_threads)
    assert text == response.text
