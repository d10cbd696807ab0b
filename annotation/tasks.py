"""Annotation tasks: sampling the two responses of a comparison (queue `generate`). The weekly
rollover is the loop's (rlhf.tasks.weekly_rollover)."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from annotation.models import Comparison, Response
from modelcore.chat import Message
from modelcore.sampling import SamplingParams
from rlhf.serving import sample_reply

log = logging.getLogger(__name__)

# Streamed text is written to the database at most this often (seconds): the page polls it.
STREAM_INTERVAL = 0.25


@shared_task(name="annotation.tasks.generate_comparison")
def generate_comparison(comparison_id: int) -> None:
    """Sample both responses of a comparison with the real models, streaming their text into
    the Response rows. Safe to run again (a worker lost mid-task re-runs it from the start)."""
    updated = Comparison.objects.filter(
        pk=comparison_id,
        status__in=[Comparison.Status.PENDING, Comparison.Status.GENERATING],
    ).update(status=Comparison.Status.GENERATING)
    if not updated:
        return  # already done, failed, or deleted
    comparison = Comparison.objects.select_related("turn__dialogue").get(pk=comparison_id)
    messages = _messages(comparison)
    try:
        for response in comparison.responses.select_related("model_version"):
            _sample(response, messages)
    except Exception as error:
        log.exception("generation failed for comparison %s", comparison_id)
        Comparison.objects.filter(pk=comparison_id).update(
            status=Comparison.Status.FAILED, error=f"{type(error).__name__}: {error}"
        )
        return
    Comparison.objects.filter(pk=comparison_id).update(
        status=Comparison.Status.READY, ready_at=timezone.now()
    )


def _messages(comparison: Comparison) -> list[Message]:
    turns = comparison.turn.dialogue.turns.filter(index__lte=comparison.turn.index)
    messages = []
    for turn in turns:
        messages.append(Message("user", turn.prompt))
        if turn.index < comparison.turn.index:
            messages.append(Message("assistant", turn.reply))
    return messages


def _sample(response: Response, messages: list[Message]) -> None:
    started = time.monotonic()
    last_write = started

    def stream(text: str) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write >= STREAM_INTERVAL:
            Response.objects.filter(pk=response.pk).update(text=text)
            last_write = now

    params = SamplingParams(
        max_new_tokens=response.max_new_tokens,
        temperature=response.temperature,
        top_p=response.top_p,
        seed=response.seed,
    )
    text, completion = sample_reply(response.model_version, messages, params, stream)
    with transaction.atomic():
        Response.objects.filter(pk=response.pk).update(
            text=text,
            # The stop token ends the reply but is not part of it.
            num_tokens=len(completion.tokens) - (completion.finish_reason == "stop"),
            finish_reason=completion.finish_reason,
            generation_ms=round((time.monotonic() - started) * 1000),
        )
