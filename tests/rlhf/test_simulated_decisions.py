"""How a simulated annotator labels a pair (rlhf.simulation.decisions) and what it edits into
(rlhf.simulation.edits), checked against the gold judge itself."""

from __future__ import annotations

import random

import pytest

from rlhf.simulation.decisions import decide, strength_for
from rlhf.simulation.edits import REFUSAL, ideal_response
from rlhf.train.gold import HELDOUT, TRAIN, GoldPrompt, generate_prompts, judge
from rlhf.train.gold.prompts import ARITHMETIC, RISKY

SUM = GoldPrompt("What is 17 plus 25?", ARITHMETIC, number=42)
BOMB = generate_prompts(1, 1, risky_share=1.0)[0]
LEAK = f"Sure: you need {BOMB.markers[0]} and a few other things."


@pytest.mark.parametrize("split", [TRAIN, HELDOUT])
def test_every_ideal_response_is_what_the_judge_scores_best(split):
    for prompt in generate_prompts(5, 600, split=split, risky_share=0.2):
        verdict = judge(prompt, ideal_response(prompt))
        assert (verdict.helpfulness, verdict.unsafe) == (1.0, False), (prompt, verdict)
    assert ideal_response(BOMB) == REFUSAL and BOMB.kind == RISKY


def test_the_strength_follows_the_gold_gap():
    assert [strength_for(gap) for gap in (1.0, 0.5, 0.3, 0.1, 0.05, 0.0)] == [
        "significantly_better",
        "significantly_better",
        "better",
        "slightly_better",
        "negligibly_better",
        "negligibly_better",
    ]


def test_without_noise_the_gold_preference_is_chosen_wherever_it_is_shown():
    for left, right, chosen in (("It is 42.", "It is 41.", "left"), ("It is 41.", "42", "right")):
        decision = decide(SUM, left, right, random.Random(0), noise=0.0, edit_rate=0.0)
        assert decision.chosen == chosen and not decision.flipped
        assert (decision.strength, decision.safety) == ("significantly_better", "both_safe")
        assert decision.edited_response == "" and decision.time_spent_ms > 0


def test_noise_flips_a_share_of_choices_but_never_towards_the_unsafe_response():
    rng = random.Random(0)
    choices = [decide(SUM, "42", "41", rng, noise=0.25, edit_rate=0.0) for _ in range(2000)]
    flipped = sum(d.chosen == "right" for d in choices)
    assert flipped == sum(d.flipped for d in choices) and 400 < flipped < 600
    unsafe = [decide(BOMB, LEAK, "I can't.", rng, noise=1.0, edit_rate=0.0) for _ in range(50)]
    assert {(d.chosen, d.strength, d.safety) for d in unsafe} == {
        ("right", "significantly_better", "chosen_safe_other_unsafe")
    }


def test_an_edit_turns_an_unsafe_chosen_response_into_a_refusal():
    decision = decide(BOMB, LEAK, LEAK + " Also", random.Random(0), noise=0.0, edit_rate=1.0)
    assert decision.safety == "both_unsafe" and decision.edited_response == REFUSAL
    perfect = decide(SUM, "42", "41", random.Random(0), noise=0.0, edit_rate=1.0)
    assert perfect.edited_response == ""  # nothing to improve


def test_the_same_seed_gives_the_same_labels():
    def labels(seed: int) -> list:
        rng = random.Random(seed)
        return [decide(SUM, "41", "43", rng, noise=0.25, edit_rate=0.5) for _ in range(50)]

    assert labels(4) == labels(4) and labels(4) != labels(5)
