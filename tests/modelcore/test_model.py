"""The decoder on tiny variants of a real architecture: shapes, caching, heads, HF interop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from modelcore.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from modelcore.config import ConfigError, ModelConfig
from modelcore.hf_interop import (
    config_to_hf,
    load_hf_model,
    save_hf_model,
    state_dict_from_hf,
    state_dict_to_hf,
)
from modelcore.model import LlamaLM, ScalarModel
from modelcore.sampling import SamplingParams, generate
from modelcore.segments import Segments
from modelcore.tokenizer import Tokenizer

# GQA with odd sizes: 6 query heads over 2 KV heads, head_dim 8, an uneven MLP width.
TINY = ModelConfig.from_name(
    "smollm2-135m",
    vocab_size=128,
    dim=48,
    n_layers=3,
    n_heads=6,
    n_kv_heads=2,
    intermediate_size=72,
    max_seq_len=64,
)
TINY_UNTIED = ModelConfig.from_name(
    "llama2-7b",
    vocab_size=128,
    dim=48,
    n_layers=2,
    n_heads=6,
    n_kv_heads=3,
    intermediate_size=56,
    max_seq_len=64,
)


def tiny_model(config: ModelConfig = TINY, seed: int = 0) -> LlamaLM:
    torch.manual_seed(seed)
    return LlamaLM(config).eval()


def test_presets_have_the_published_shapes() -> None:
    smol = ModelConfig.from_name("smollm2-135m")
    assert (smol.n_layers, smol.dim, smol.n_heads, smol.n_kv_heads, smol.vocab_size) == (
        30,
        576,
        9,
        3,
        49152,
    )
    assert smol.rope_base == 100_000.0 and smol.head_dim == 64
    assert smol.num_params() == 134_515_008  # SmolLM2-135M's published count
    llama70 = ModelConfig.from_name("llama2-70b")
    assert (llama70.dim, llama70.n_layers, llama70.n_kv_heads) == (8192, 80, 8)
    assert 68.9e9 < llama70.num_params() < 69.1e9
    assert 6.7e9 < ModelConfig.from_name("llama2-7b").num_params() < 6.8e9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_heads": 7}, "not divisible by n_heads"),
        ({"n_kv_heads": 4}, "not a multiple of n_kv_heads"),
        ({"dim": 0}, "dim must be a positive integer"),
    ],
)
def test_bad_config_is_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_name("smollm2-135m", **overrides)
    with pytest.raises(ConfigError, match="unknown model preset 'gpt5'"):
        ModelConfig.from_name("gpt5")


def test_logits_shape_and_last_only() -> None:
    model = tiny_model()
    tokens = torch.randint(0, TINY.vocab_size, (2, 10))
    logits = model(tokens)
    assert logits.shape == (2, 10, TINY.vocab_size)
    torch.testing.assert_close(model(tokens, last_only=True)[:, 0], logits[:, -1])


def test_sequence_longer_than_context_is_an_error() -> None:
    with pytest.raises(ValueError, match="65 tokens exceeds the model's context of 64"):
        tiny_model()(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("config", [TINY, TINY_UNTIED], ids=["tied-gqa", "untied"])
def test_hf_round_trip_keeps_logits(
    config: ModelConfig, tmp_path: Path, llama_style_tokenizer: Tokenizer
) -> None:
    """A random transformers LlamaForCausalLM -> ours -> Tandem checkpoint -> HF again."""
    torch.manual_seed(1)
    hf_config = LlamaConfig(
        **config_to_hf(config, bos_id=1, eos_id=2, pad_id=2, dtype=torch.float32)
    )
    hf = LlamaForCausalLM(hf_config).eval()
    hf.save_pretrained(tmp_path / "hf")
    llama_style_tokenizer.save(tmp_path / "hf")
    tokens = torch.randint(0, config.vocab_size, (3, 17))
    with torch.no_grad():
        expected = hf(tokens).logits

        ours, tokenizer = load_hf_model(tmp_path / "hf")
        torch.testing.assert_close(ours(tokens), expected, atol=1e-5, rtol=0)

        save_checkpoint(ours, tokenizer, tmp_path / "ours")
        reloaded = load_checkpoint(tmp_path / "ours").model
        assert torch.equal(reloaded(tokens), ours(tokens))

        save_hf_model(reloaded, tokenizer, tmp_path / "back")
        again = AutoModelForCausalLM.from_pretrained(tmp_path / "back").eval()
        assert torch.equal(again(tokens).logits, expected)


def test_training_gradients_match_transformers() -> None:
    """Every weight, fused q/k/v and gate/up included, gets transformers' gradient."""
    model = tiny_model()
    hf_config = LlamaConfig(
        **config_to_hf(TINY, bos_id=None, eos_id=None, pad_id=None, dtype=torch.float32)
    )
    hf = LlamaForCausalLM(hf_config)
    hf.load_state_dict(state_dict_to_hf(model), strict=False)  # the tied LM head is the embedding
    tokens = torch.randint(0, TINY.vocab_size, (2, 12))
    for logits in (model(tokens), hf(tokens).logits):
        F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
    hf_grads = {name: param.grad for name, param in hf.named_parameters()}
    expected = state_dict_from_hf(hf_grads, TINY)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_weights_that_do_not_fit_the_config_are_refused() -> None:
    state = tiny_model().state_dict()
    del state["lm_head.weight"]  # tied
    wrong = dataclasses.replace(TINY, intermediate_size=80)
    with pytest.raises(CheckpointError, match=r"feed_forward\.w13\.weight has shape \(144, 48\)"):
        build_model(wrong, state, torch.float32)
    deeper = dataclasses.replace(TINY, n_layers=4)
    with pytest.raises(CheckpointError, match=r"missing \['decoder\.layers\.3\."):
        build_model(deeper, state, torch.float32)


def greedy_without_cache(model: LlamaLM, prompt: list[int], steps: int) -> list[int]:
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            sequence.append(int(model(torch.tensor([sequence]))[0, -1].argmax()))
    return sequence[len(prompt) :]


def test_greedy_with_cache_equals_without() -> None:
    model = tiny_model()
    prompt = [5, 17, 99, 3, 42]
    [completion] = generate(
        model, [prompt], SamplingParams(max_new_tokens=30, temperature=0), pad_id=0
    )
    assert completion.tokens == greedy_without_cache(model, prompt, 30)


def test_left_padded_batch_equals_each_prompt_alone() -> None:
    model = tiny_model(seed=3)
    prompts = [[7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [42], [5, 6, 7, 8, 9, 10]]
    params = SamplingParams(max_new_tokens=12, temperature=0)
    batched = generate(model, prompts, params, pad_id=0)
    for prompt, completion in zip(prompts, batched, strict=True):
        [alone] = generate(model, [prompt], params, pad_id=0)
        assert completion.tokens == alone.tokens
        torch.testing.assert_close(completion.logprobs, alone.logprobs, atol=1e-5, rtol=0)


def test_reward_is_read_at_the_last_real_token_under_padding() -> None:
    torch.manual_seed(0)
    model = ScalarModel(TINY).eval()
    torch.nn.init.normal_(model.score.weight)
    sequences = [[3, 4, 5, 6], [9, 10], [11, 12, 13, 14, 15, 16, 17]]
    alone = torch.stack(
        [model.reward(torch.tensor([s]), torch.tensor([len(s)]))[0] for s in sequences]
    )
    longest = max(map(len, sequences))
    for pad in (0, 127):
        padded = torch.tensor([s + [pad] * (longest - len(s)) for s in sequences])
        rewards = model.reward(padded, torch.tensor([len(s) for s in sequences]))
        torch.testing.assert_close(rewards, alone, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="out of range"):
        model.reward(padded, torch.tensor([0, 2, 7]))


def test_reward_head_learns_a_preference() -> None:
    """Ranking loss on pairs where the chosen sequence contains token 7: the loss falls."""
    torch.manual_seed(0)
    model = ScalarModel.from_policy(tiny_model())
    assert torch.count_nonzero(model.score.weight) == 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rejected = torch.randint(8, TINY.vocab_size, (16, 12), generator=generator)
        chosen = rejected.clone()
        chosen[:, 5] = 7
        lengths = torch.randint(6, 13, (16,), generator=generator)
        return chosen, rejected, lengths

    losses = []
    for _ in range(40):
        chosen, rejected, lengths = batch()
        margin = model.reward(chosen, lengths) - model.reward(rejected, lengths)
        loss = -F.logsigmoid(margin).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # zero head: r_c = r_r
    assert sum(losses[-5:]) / 5 < 0.2


def test_segments_attend_as_the_dense_block_mask_does_values_and_gradients() -> None:
    """Two rows: a shared prompt with two responses, then a sequence alone; padding after."""
    torch.manual_seed(0)
    model = LlamaLM(TINY)
    tokens = torch.randint(0, TINY.vocab_size, (2, 12))
    # Row 0: prompt 0-3, responses 4-6 and 7-9 (their positions both continue from 4), pad 10-11.
    # Row 1: one sequence 0-8, pad 9-11.
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 4, 5, 6, 0, 0], [*range(9), 0, 0, 0]])
    segments = Segments.of(
        [([*range(4), 4, 5, 6], 0), ([*range(4), 7, 8, 9], 4), ([*range(12, 21)], 0)]
    )
    group = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3], [4] * 9 + [5] * 3])
    shared = torch.tensor([[True] * 4 + [False] * 8, [False] * 12])
    causal = torch.ones(12, 12, dtype=torch.bool).tril()
    sees = (group[:, :, None] == group[:, None, :]) | (
        shared[:, None, :] & (group[:, :, None] <= 2) & (group[:, :, None] >= 0)
    )
    dense = (sees & causal)[:, None]
    real = torch.tensor([[True] * 10 + [False] * 2, [True] * 9 + [False] * 3])

    def run(mask: torch.Tensor | Segments) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        hidden = model.decoder(tokens, positions=positions, mask=mask)
        (hidden[real] ** 2).sum().backward()
        return hidden[real], [p.grad.clone() for p in model.parameters()]

    expected, expected_grads = run(dense)
    got, grads = run(segments)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for grad, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, want, atol=1e-5, rtol=1e-4)
