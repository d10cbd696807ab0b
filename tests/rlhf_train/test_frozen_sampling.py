"""A policy that only samples (rejection sampling, evaluation) samples in a faster mode, from a
copy: the stage's own policy keeps its weights as loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelcore.cpu_sampling import Int8Linear, PackedLinear
from modelcore.sampling import SamplingParams, generate
from rlhf.train.evaluate import EvalConfig, evaluate_policy
from rlhf.train.judge import frozen_sampler
from tests.rlhf_train.train_fixtures import tiny_policy

PROMPTS = [[5, 6, 7], [9, 10, 11, 12]]
GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)


@pytest.mark.parametrize(("mode", "layer"), [("reference", PackedLinear), ("int8", Int8Linear)])
def test_a_frozen_policy_samples_from_a_prepared_copy(mode: str, layer: type) -> None:
    policy = tiny_policy(vocab_size=64).eval()
    before = {name: p.clone() for name, p in policy.state_dict().items()}
    expected = [c.tokens for c in generate(policy, PROMPTS, GREEDY, pad_id=0)]
    sampler = frozen_sampler(policy, mode)
    assert any(isinstance(m, layer) for m in sampler.modules())
    assert not any(isinstance(m, (PackedLinear, Int8Linear)) for m in policy.modules())
    for name, p in policy.state_dict().items():
        assert torch.equal(p, before[name]), name
    sampled = [c.tokens for c in generate(sampler, PROMPTS, GREEDY, pad_id=0)]
    if mode == "reference":  # the same weights, packed: the same greedy tokens
        assert sampled == expected
    else:
        assert all(len(tokens) == 8 for tokens in sampled)


def test_an_unknown_sampling_mode_is_refused_by_name(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    config = EvalConfig(
        data=tiny_comparisons,
        policy=tiny_checkpoint,
        baseline=tiny_checkpoint,
        helpfulness_rm=tiny_reward_model,
        out=tmp_path,
        max_new_tokens=4,
        sampling_mode="fp4",
    )
    with pytest.raises(ValueError, match="unknown sampling mode 'fp4'"):
        evaluate_policy(config)
