"""Simulated annotators: real users in the `annotator` group who work through the annotation
services exactly as the pages do, in one of two modes:

- write (`annotate_written`): each writes a gold prompt (`start_dialogue`: the batch's two
  models answer it on the `generate` worker), waits for both responses and labels its own pair;
- queue (`annotate_queued`): the week's gold prompts are imported into the batch as an admin
  imports them (`import_prompts`, `batch.overlap` places each), and the annotators take places
  from the queue (`claim_next`) and label what they are given.

Either way an annotator reads the pair as shown (left and right) and submits a label with a
time spent (`submit_label`); it never writes a row itself. How it chooses is
`decisions.decide`, with the annotator's own seeded generator.

The services draw the side shown on the left, the held-out flag and the two sampling seeds
from Python's global generator, and claim_next shuffles its candidate places with it; it is
seeded from a key before each write, import and claim, so those draws, and with them the
responses and who labels what, follow from the simulation's seed.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from annotation.models import Batch, Comparison
from annotation.permissions import ANNOTATOR
from annotation.services import (
    LabelInput,
    claim_next,
    import_prompts,
    start_dialogue,
    submit_label,
)
from rlhf.simulation.decisions import Decision, decide
from rlhf.train.gold import GoldPrompt

POLL_SECONDS = 0.2
WRITE, QUEUE = "write", "queue"  # the modes: annotators write their prompts, or take the queue's
MODES = (WRITE, QUEUE)


class SimulationError(Exception):
    """The simulation cannot go on; the message says why and what to do."""


@dataclass
class SimulatedAnnotator:
    user: Any
    rng: random.Random
    noise: float
    edit_rate: float

    def write(self, prompt: GoldPrompt, key: str) -> Comparison:
        """Write `prompt` as the first turn of a new dialogue, as the annotator page does."""
        random.seed(key)  # the services' draws: side, held-out flag, sampling seeds
        return start_dialogue(
            author=self.user,
            prompt=prompt.text,
            guideline=_guideline(prompt),
            risky=prompt.risky,
        ).comparison

    def claim(self, key: str) -> Comparison | None:
        """The next place the queue gives this annotator, as the page's next item is taken."""
        random.seed(key)  # claim_next's shuffle of the candidate places
        return claim_next(annotator=self.user)

    def label(self, comparison: Comparison, prompt: GoldPrompt) -> Decision:
        """Read the sampled pair as shown and submit the label."""
        texts = {r.side: r.text for r in comparison.responses.all()}
        decision = decide(
            prompt,
            texts[comparison.left],
            texts[comparison.right],
            self.rng,
            noise=self.noise,
            edit_rate=self.edit_rate,
        )
        submit_label(
            annotator=self.user,
            comparison_id=comparison.pk,
            data=LabelInput(
                chosen=decision.chosen,
                strength=decision.strength,
                safety=decision.safety,
                time_spent_ms=decision.time_spent_ms,
                edited_response=decision.edited_response,
            ),
        )
        return decision


def enlist(count: int, *, seed: int, noise: float, edit_rate: float) -> list[SimulatedAnnotator]:
    """`count` annotators (users sim-annotator-1 ...; made on first use), each with a generator
    seeded from `seed` and its number."""
    group, _ = Group.objects.get_or_create(name=ANNOTATOR)
    annotators = []
    for number in range(1, count + 1):
        user, _ = get_user_model().objects.get_or_create(username=f"sim-annotator-{number}")
        user.groups.add(group)
        rng = random.Random(seed * 1_000_003 + number)
        annotators.append(SimulatedAnnotator(user, rng, noise, edit_rate))
    return annotators


@dataclass
class WeekOfLabels:
    """What the annotators did in one week: counts of labels (`heldout`: of labels of held-out
    comparisons), and the comparisons they cover (in queue mode, each labelled `overlap`
    times)."""

    labels: int = 0
    comparisons: set[int] = field(default_factory=set)  # ids
    heldout: int = 0
    gold_ties: int = 0
    flipped: int = 0
    edited: int = 0
    strengths: Counter = field(default_factory=Counter)
    safety: Counter = field(default_factory=Counter)
    time_spent_ms: int = 0

    def add(self, comparison: Comparison, decision: Decision) -> None:
        self.labels += 1
        self.comparisons.add(comparison.pk)
        self.heldout += comparison.heldout
        self.gold_ties += not decision.gold_preference
        self.flipped += decision.flipped
        self.edited += bool(decision.edited_response)
        self.strengths[decision.strength] += 1
        self.safety[decision.safety] += 1
        self.time_spent_ms += decision.time_spent_ms

    def to_json(self) -> dict[str, Any]:
        preferred = self.labels - self.gold_ties
        return {
            "labels": self.labels,
            "comparisons": len(self.comparisons),
            "heldout": self.heldout,
            "gold_ties": self.gold_ties,
            "flipped": self.flipped,
            "edited": self.edited,
            # Of the pairs the judge preferred one of: the share chosen as it did.
            "agreement_with_gold": (preferred - self.flipped) / preferred if preferred else None,
            "strengths": dict(sorted(self.strengths.items())),
            "safety": dict(sorted(self.safety.items())),
            "simulated_time_spent_ms": self.time_spent_ms,
        }


def annotate_written(
    annotators: Sequence[SimulatedAnnotator],
    prompts: Sequence[GoldPrompt],
    *,
    key: str,
    timeout: float,
    progress: Callable[[str], None],
) -> WeekOfLabels:
    """Write mode: the open batch collects `prompts`, dealt to the annotators in turn. In each
    round every annotator writes one prompt, the round's pairs are sampled together by the
    generate worker, and each annotator labels its own, in a fixed order: the rows are written,
    and the generators drawn from, in the same order on every run."""
    week = WeekOfLabels()
    for start in range(0, len(prompts), len(annotators)):
        round_ = list(zip(annotators, prompts[start : start + len(annotators)], strict=False))
        written = [
            (annotator, annotator.write(prompt, f"{key}:{start + i}"), prompt)
            for i, (annotator, prompt) in enumerate(round_)
        ]
        sampled = wait_until_sampled([c.pk for _, c, _ in written], timeout=timeout)
        for annotator, comparison, prompt in written:
            week.add(comparison, annotator.label(sampled[comparison.pk], prompt))
        progress(f"{week.labels}/{len(prompts)} labelled")
    return week


def annotate_queued(
    annotators: Sequence[SimulatedAnnotator],
    prompts: Sequence[GoldPrompt],
    *,
    batch: Batch,
    key: str,
    timeout: float,
    progress: Callable[[str], None],
) -> WeekOfLabels:
    """Queue mode: `prompts` are imported into `batch`, `batch.overlap` places each, and once
    the generate worker has sampled them all (the queue offers only sampled pairs: claiming
    before would make who gets what depend on the worker's pace) the annotators take turns in
    a fixed order, each claiming a place, labelling it and submitting, until the queue has
    nothing left for any of them. An annotator knows its pair's gold prompt from the prompt's
    text, as a person knows the task from what the page shows."""
    places = len(prompts) * batch.overlap
    random.seed(f"{key}:import")  # the services' draws, as before a write
    imported = import_prompts(batch=batch, rows=[_queue_row(prompt) for prompt in prompts])
    gold = {
        comparison.turn.prompt: prompt for comparison, prompt in zip(imported, prompts, strict=True)
    }
    progress(f"imported {len(imported)} prompts, {places} places: waiting for the samples")
    wait_until_sampled([c.pk for c in imported], timeout=timeout)
    week = WeekOfLabels()
    claiming = list(annotators)
    turn = 0
    while claiming:
        labelled = week.labels
        for annotator in list(claiming):
            turn += 1
            comparison = annotator.claim(f"{key}:claim:{turn}")
            if comparison is None:  # every pair sampled, no lock held: empty for good
                claiming.remove(annotator)
                continue
            week.add(comparison, annotator.label(comparison, gold[comparison.turn.prompt]))
        if week.labels > labelled:
            progress(f"{week.labels}/{places} labelled")
    if week.labels != places:
        raise SimulationError(
            f"the queue gave {week.labels} of {places} places: are other annotators "
            f"labelling {batch.name}?"
        )
    return week


def _queue_row(prompt: GoldPrompt) -> dict[str, Any]:
    """A prompt as a row of the admin's import."""
    return {"prompt": prompt.text, "guideline": _guideline(prompt), "risky": prompt.risky}


def _guideline(prompt: GoldPrompt) -> str:
    """The guideline a gold prompt is labelled under: safety for a risky one."""
    return "safety" if prompt.risky else "helpfulness"


def wait_until_sampled(ids: list[int], *, timeout: float) -> dict[int, Comparison]:
    """The comparisons once the generate worker has sampled them all (polling their status, as
    the page does); SimulationError if one failed or the time ran out."""
    deadline = time.monotonic() + timeout
    waiting = Comparison.objects.filter(pk__in=ids)
    while waiting.filter(status__in=(Comparison.Status.PENDING, Comparison.Status.GENERATING)):
        if time.monotonic() > deadline:
            raise SimulationError(
                f"comparisons {ids} still unsampled after {timeout:.0f} s: is a Celery worker "
                "running on the default and generate queues?"
            )
        time.sleep(POLL_SECONDS)
    comparisons = {c.pk: c for c in waiting.prefetch_related("responses")}
    if failed := [c for c in comparisons.values() if c.status == Comparison.Status.FAILED]:
        raise SimulationError(f"sampling comparison {failed[0].pk} failed: {failed[0].error}")
    return comparisons
