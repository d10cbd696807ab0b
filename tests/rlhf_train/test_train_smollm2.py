"""Acceptance on the real SmolLM2-135M-Instruct, in the cheap modes a CPU affords: a reward
model that ranks right answers above wrong ones on questions it never saw, a rejection-sampling
round that raises the reward of the policy's answers, DPO that raises the chosen-over-rejected
log-probability margin on held-out pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from train_fixtures import knowledge_rows, write_rows

from rlhf.train import (
    DPOConfig,
    EvalConfig,
    RejectionConfig,
    RewardConfig,
    evaluate_policy,
    run_dpo,
    run_rejection_sampling,
    train_reward_model,
)

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="session")
def knowledge_comparisons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 questions: 48 for training with 3 wrong answers each, 16 held out with 2."""
    rows = knowledge_rows(pairs_per_question=3, heldout_share=0.25, seed=0, heldout_pairs=2)
    return write_rows(tmp_path_factory.mktemp("knowledge") / "comparisons.jsonl", rows)


@pytest.fixture(scope="session")
def smollm2_reward(
    smollm2_checkpoint: Path,
    knowledge_comparisons: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("smollm2-rm")
    metrics = train_reward_model(
        RewardConfig(
            data=knowledge_comparisons,
            policy=smollm2_checkpoint,
            out=out,
            train_layers=2,  # the top 2 of 30 blocks, the final norm and the head
            batch_size=16,
            micro_batch_size=16,
            lr=1e-3,
            eval_batch_size=32,
        )
    )
    return out / "model", metrics


def test_reward_model_ranks_right_answers_on_unseen_questions(
    smollm2_reward: tuple[Path, dict[str, Any]],
) -> None:
    _, metrics = smollm2_reward
    heldout = metrics["heldout"]
    print("reward model held-out:", heldout)
    assert heldout["pairs"] == 32
    assert heldout["accuracy"] >= 0.85
    assert sum(s["pairs"] for s in heldout["accuracy_by_strength"].values()) == 32
    assert metrics["train_pairs"] == 144


def test_rejection_sampling_raises_the_reward_on_heldout_prompts(
    smollm2_checkpoint: Path,
    smollm2_reward: tuple[Path, dict[str, Any]],
    knowledge_comparisons: Path,
    tmp_path: Path,
) -> None:
    reward_model, _ = smollm2_reward
    metrics = run_rejection_sampling(
        RejectionConfig(
            data=knowledge_comparisons,
            policy=smollm2_checkpoint,
            helpfulness_rm=reward_model,
            out=tmp_path / "rs",
            samples=4,
            temperature=1.0,
            max_new_tokens=16,
            generation_batch_size=32,
            score_batch_size=32,
            train_layers=2,
            batch_size=4,
            micro_batch_size=4,
            max_seq_len=128,
            lr=1e-4,
            epochs=2,
        )
    )
    curve = metrics["reward_vs_k"]
    print("rejection sampling, reward against K:", curve)
    assert curve[-1]["max"] > curve[0]["max"]  # best-of-4 beats one sample
    evaluation = evaluate_policy(
        EvalConfig(
            data=knowledge_comparisons,
            policy=tmp_path / "rs" / "model",
            baseline=smollm2_checkpoint,
            helpfulness_rm=reward_model,
            out=tmp_path / "rs",
            temperature=0.0,
            max_new_tokens=16,
            generation_batch_size=16,
        )
    )
    print(
        "held-out reward:",
        evaluation["mean_reward_baseline"],
        "->",
        evaluation["mean_reward_policy"],
    )
    assert evaluation["mean_reward_policy"] > evaluation["mean_reward_baseline"]


def test_dpo_raises_the_heldout_logprob_margin(smollm2_checkpoint: Path, tmp_path: Path) -> None:
    # One wrong answer per training question (48 pairs) keeps this to 6 steps.
    rows = knowledge_rows(pairs_per_question=1, heldout_share=0.25, seed=0, heldout_pairs=2)
    metrics = run_dpo(
        DPOConfig(
            data=write_rows(tmp_path / "comparisons.jsonl", rows),
            policy=smollm2_checkpoint,
            out=tmp_path / "run",
            train_layers=2,
            batch_size=8,
            micro_batch_size=8,
            lr=3e-4,
            eval_batch_size=32,
        )
    )
    heldout = metrics["heldout"]
    print("DPO held-out:", heldout)
    assert heldout["pairs"] == 32
    assert heldout["logprob_margin_after"] > heldout["logprob_margin_before"] + 1.0
    assert heldout["reward_accuracy"] > 0.75
