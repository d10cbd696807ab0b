"""A policy that only samples (rejection sampling, evaluation) samples in a faster mode, from a
copy: the stage's own policy keeps its weights as loaded. A policy that trains between its
samples (PPO) samples through the compiled decoding step on a GPU, with the weights its
optimizer last wrote.

The CUDA test runs where a GPU is present (it skips elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelcore.compiled_decode import CompiledDecoding
from modelcore.cpu_sampling import Int8Linear, PackedLinear
from modelcore.model import LlamaLM
from modelcore.optim import make_adamw
from modelcore.sampling import SamplingParams, generate
from rlhf.train.data import Prompt
from rlhf.train.encoding import ChatEncoder
from rlhf.train.evaluate import EvalConfig, evaluate_policy
from rlhf.train.judge import frozen_sampler, sample_exchanges, training_sampler
from tests.rlhf_train.train_fixtures import tiny_policy, tiny_tokenizer

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


def sampled_ids(sampler: LlamaLM | CompiledDecoding, encoder: ChatEncoder) -> list[list[int]]:
    prompts = [Prompt("What is two and two?"), Prompt("Name a colour.")]
    exchanges = sample_exchanges(
        sampler, encoder, prompts, temperature=0.0, max_new_tokens=8, seed=0, batch_size=2
    )
    return [e.ids for e in exchanges]


def train_once(policy: LlamaLM) -> None:
    """One AdamW step, in place, on the policy's own greedy answers' log-likelihood."""
    optimizer = make_adamw(policy, lr=0.05, weight_decay=0.0)
    tokens = torch.tensor([[5, 6, 7, 8, 9, 10]], device=policy.decoder.embed.weight.device)
    policy(tokens).float().logsumexp(-1).mean().backward()
    optimizer.step()


def test_a_training_policy_samples_as_it_is_on_a_cpu() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    policy = tiny_policy(encoder.tokenizer.vocab_size).train()
    assert training_sampler(policy) is policy
    sampled_ids(policy, encoder)
    assert policy.training  # sampled in eval mode, then back to training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_training_policy_samples_on_a_gpu_with_the_weights_its_optimizer_wrote() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    policy = tiny_policy(encoder.tokenizer.vocab_size).cuda().train()
    sampler = training_sampler(policy)
    assert isinstance(sampler, CompiledDecoding) and sampler.cuda_graphs
    before = sampled_ids(sampler, encoder)
    assert before == sampled_ids(policy, encoder)  # the graph samples what eager steps do
    assert policy.training
    train_once(policy)
    after = sampled_ids(sampler, encoder)
    # The replayed graph reads the updated weights: eager sampling of them agrees.
    assert after == sampled_ids(policy, encoder)
    assert after != before
