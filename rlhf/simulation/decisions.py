"""How a simulated annotator labels a pair, from the gold judge's verdicts (pure Python).

- **Choice:** the response the gold judge prefers (`rlhf.train.gold.compare`: the safe one when
  exactly one is unsafe, else the more helpful; a coin on a tie), flipped with probability
  `noise` (AlpacaFarm flips 25% of its simulated preferences). The guideline says the safer
  response is always the better one (the label set has no "chosen unsafe, other safe" bin), so
  a flip never chooses an unsafe response over a safe one; a tie has nothing to flip.
- **Strength:** from the gold helpfulness gap (STRENGTH_GAPS): at least 0.5 significantly
  better, 0.25 better, 0.1 slightly better, else negligibly better / unsure; significantly
  better whenever exactly one response is unsafe. A flip changes the choice, not the strength:
  the annotator is as sure as the responses look different, and wrong.
- **Safety:** from the gold unsafe verdicts of the chosen and the other response
  (rlhf.train.data.SAFETY_LABELS): chosen_safe_other_unsafe, both_safe or both_unsafe.
- **Edit:** with probability `edit_rate`, a chosen response the judge does not score 1.0 (or
  finds unsafe) is edited into the ideal one (`edits.ideal_response`: a refusal for a risky
  prompt, the correct answer for a checkable one).
- **Time spent:** a reading time, 8 s plus 0.25 s per word of the two responses, times a
  factor drawn in [0.75, 1.5).

Every label draws the same four numbers from the annotator's generator, in the same order,
whatever the pair, so one annotator's labels follow from its seed and the texts alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlhf.simulation.edits import ideal_response
from rlhf.train.gold import GoldPrompt, compare
from rlhf.train.gold.text import words

# (smallest gold helpfulness gap, strength), strongest first; below the last: negligibly better.
STRENGTH_GAPS = ((0.5, "significantly_better"), (0.25, "better"), (0.1, "slightly_better"))
WEAKEST = "negligibly_better"


@dataclass(frozen=True)
class Decision:
    chosen: str  # "left" or "right"
    strength: str
    safety: str
    edited_response: str  # "" when not edited
    time_spent_ms: int
    gold_preference: bool  # the judge preferred one response (False: a tie, a coin chose)
    flipped: bool  # the noise chose against the judge's preference


def strength_for(gap: float) -> str:
    return next((strength for least, strength in STRENGTH_GAPS if gap >= least), WEAKEST)


def decide(
    prompt: GoldPrompt,
    left: str,
    right: str,
    rng: random.Random,
    *,
    noise: float,
    edit_rate: float,
) -> Decision:
    """The label of a pair shown as `left` and `right` (see the module docstring)."""
    tie_coin, flip_coin, edit_coin, pace = rng.random(), rng.random(), rng.random(), rng.random()
    verdicts = compare(prompt, left, right)
    gold = {"a": "left", "b": "right", None: "left" if tie_coin < 0.5 else "right"}
    chosen = gold[verdicts.preferred]
    one_unsafe = verdicts.a.unsafe != verdicts.b.unsafe
    flipped = flip_coin < noise and verdicts.preferred is not None and not one_unsafe
    if flipped:
        chosen = "right" if chosen == "left" else "left"
    mine, other = (verdicts.a, verdicts.b) if chosen == "left" else (verdicts.b, verdicts.a)
    strength = "significantly_better" if one_unsafe else strength_for(verdicts.gap)
    if mine.unsafe:  # only when both are: the safe one is always chosen
        safety = "both_unsafe"
    else:
        safety = "chosen_safe_other_unsafe" if other.unsafe else "both_safe"
    needs_edit = mine.unsafe or mine.helpfulness < 1.0
    edited = ideal_response(prompt) if needs_edit and edit_coin < edit_rate else ""
    seconds = (8 + 0.25 * len(words(left + " " + right))) * (0.75 + 0.75 * pace)
    return Decision(
        chosen=chosen,
        strength=strength,
        safety=safety,
        edited_response=edited,
        time_spent_ms=round(seconds * 1000),
        gold_preference=verdicts.preferred is not None,
        flipped=flipped,
    )
