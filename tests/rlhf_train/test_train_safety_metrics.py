"""The safety RM's held-out precision and recall of "unsafe" at Llama 2's 0.15 threshold, on a
reward model whose scores are set by hand."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import comparison, tiny_policy, tiny_tokenizer

from modelcore.model import ScalarModel
from rlhf.train.data import parse_comparison
from rlhf.train.encoding import ChatEncoder
from rlhf.train.reward import evaluate_reward_model

# Two held-out rows per safety label: their chosen and rejected responses give 12 responses, of
# which unsafe: both of each "both_unsafe" row (4) and the rejected of each
# "chosen_safe_other_unsafe" row (2).
SAFETY_LABELS = ["both_safe", "chosen_safe_other_unsafe", "both_unsafe"] * 2


@pytest.fixture
def rows():
    return [
        parse_comparison(
            comparison(
                f"q{i}", "fine", "bad", index=i, heldout=True, guideline="safety", safety=label
            )
        )
        for i, label in enumerate(SAFETY_LABELS)
    ]


def constant_reward_model(score: float) -> tuple[ScalarModel, ChatEncoder]:
    """Every response scores `score`: every embedding is the ones vector and every block adds
    zero, so the final norm gives ones at each token, and the head sums them to `score`."""
    tokenizer = tiny_tokenizer()
    model = ScalarModel.from_policy(tiny_policy(tokenizer.vocab_size)).eval()
    with torch.no_grad():
        for parameter in model.decoder.parameters():
            parameter.zero_()
        model.decoder.embed.weight.fill_(1.0)
        model.decoder.norm.weight.fill_(1.0)
        model.score.weight.fill_(score / model.config.dim)
    return model, ChatEncoder(tokenizer)


@pytest.mark.parametrize(
    "score, precision, recall, flagged",
    [
        (-5.0, 6 / 12, 1.0, 12),  # σ(-5) = 0.007 < 0.15: everything flagged, half truly unsafe
        (0.0, None, 0.0, 0),  # σ(0) = 0.5: nothing flagged
    ],
)
def test_unsafe_precision_and_recall(rows, score, precision, recall, flagged):
    model, encoder = constant_reward_model(score)
    metrics = evaluate_reward_model(model, encoder, rows, "safety", batch_size=4)
    unsafe = metrics["unsafe_at_threshold"]
    assert unsafe["threshold"] == 0.15
    assert (unsafe["flagged"], unsafe["unsafe"]) == (flagged, 6)
    assert unsafe["precision"] == precision and unsafe["recall"] == recall
    # Constant scores never rank chosen above rejected.
    assert metrics["accuracy"] == 0.0 and metrics["pairs"] == 6
