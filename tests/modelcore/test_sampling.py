"""Sampling options on a tiny random model: seeds, truncation, stop tokens, log-probabilities."""

from __future__ import annotations

import pytest
import torch

from modelcore.config import ModelConfig
from modelcore.cpu_sampling import prepare_for_cpu_sampling
from modelcore.model import LlamaLM
from modelcore.sampling import SamplingParams, generate

TINY = ModelConfig.from_name(
    "smollm2-135m",
    vocab_size=96,
    dim=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    intermediate_size=48,
    max_seq_len=40,
)
PROMPTS = [[4, 5, 6], [10, 11, 12, 13, 14]]


@pytest.fixture(scope="module")
def model() -> LlamaLM:
    torch.manual_seed(0)
    return LlamaLM(TINY).eval()


def tokens(model: LlamaLM, **params: object) -> list[list[int]]:
    return [c.tokens for c in generate(model, PROMPTS, SamplingParams(**params), pad_id=0)]


def test_same_seed_same_tokens_other_seed_other_tokens(model: LlamaLM) -> None:
    first = tokens(model, max_new_tokens=20, seed=7)
    assert first == tokens(model, max_new_tokens=20, seed=7)
    assert first != tokens(model, max_new_tokens=20, seed=8)


def test_top_k_1_and_tiny_top_p_are_greedy(model: LlamaLM) -> None:
    greedy = tokens(model, max_new_tokens=15, temperature=0)
    assert tokens(model, max_new_tokens=15, top_k=1, seed=1) == greedy
    assert tokens(model, max_new_tokens=15, top_p=1e-6, seed=2) == greedy


def test_top_k_limits_the_choices(model: LlamaLM) -> None:
    """Every sampled token is among the k most likely at its step."""
    prompt = [4, 5, 6]
    [completion] = generate(
        model,
        [prompt],
        SamplingParams(max_new_tokens=25, top_k=3, temperature=2.0, seed=3),
        pad_id=0,
    )
    sequence = prompt + completion.tokens
    with torch.no_grad():
        logits = model(torch.tensor([sequence]))[0]
    for step, token in enumerate(completion.tokens):
        top3 = logits[len(prompt) + step - 1].topk(3).indices.tolist()
        assert token in top3
    assert len(set(completion.tokens)) > 1


def test_logprobs_are_those_of_the_sampled_tokens(model: LlamaLM) -> None:
    prompt = [10, 11, 12, 13, 14]
    temperature = 0.8
    [completion] = generate(
        model,
        [prompt],
        SamplingParams(max_new_tokens=12, temperature=temperature, seed=5),
        pad_id=0,
    )
    sequence = prompt + completion.tokens
    with torch.no_grad():
        logits = model(torch.tensor([sequence]))[0, len(prompt) - 1 : -1] / temperature
    expected = logits.log_softmax(-1).gather(1, torch.tensor(completion.tokens)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(completion.logprobs), expected, atol=1e-5, rtol=0)


def test_stop_tokens_end_each_row_on_its_own(model: LlamaLM) -> None:
    greedy = generate(model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0), pad_id=0)
    stop = greedy[0].tokens[3]
    stopped = generate(
        model, PROMPTS, SamplingParams(max_new_tokens=20, temperature=0, stop_ids=(stop,)), pad_id=0
    )
    first = greedy[0].tokens.index(stop)
    assert stopped[0].tokens == greedy[0].tokens[: first + 1]
    assert stopped[0].finish_reason == "stop"
    if stop not in greedy[1].tokens:
        assert stopped[1].tokens == greedy[1].tokens
        assert stopped[1].finish_reason == "length"


def test_streaming_callback_sees_every_token_once(model: LlamaLM) -> None:
    seen: list[list[int | None]] = []
    completions = generate(
        model,
        PROMPTS,
        SamplingParams(max_new_tokens=6, temperature=0),
        pad_id=0,
        on_tokens=seen.append,
    )
    assert [[step[row] for step in seen] for row in range(2)] == [c.tokens for c in completions]


def test_generation_stops_at_the_context(model: LlamaLM) -> None:
    [completion] = generate(
        model, [list(range(1, 31))], SamplingParams(max_new_tokens=50), pad_id=0
    )
    assert len(completion.tokens) == TINY.max_seq_len - 30
    with pytest.raises(ValueError, match="prompt of 40 tokens leaves no room"):
        generate(model, [list(range(40))], SamplingParams(), pad_id=0)
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        generate(model, [[1], []], SamplingParams(), pad_id=0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -2}, "top_k"),
    ],
)
def test_bad_sampling_parameters(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SamplingParams(**params)


def test_int8_mode_stays_close_to_float() -> None:
    torch.manual_seed(0)
    model = LlamaLM(TINY).eval()
    tokens_in = torch.randint(0, TINY.vocab_size, (2, 12))
    with torch.no_grad():
        reference = model(tokens_in)
        quantized = prepare_for_cpu_sampling(model, int8=True)(tokens_in)
    assert quantized.shape == reference.shape
    relative = (quantized - reference).norm() / reference.norm()
    assert relative < 0.05


def test_packed_float32_mode_matches_float_and_needs_float32_on_cpu() -> None:
    torch.manual_seed(0)
    model = LlamaLM(TINY).eval()
    tokens_in = torch.randint(0, TINY.vocab_size, (2, 12))
    with torch.no_grad():
        reference = model(tokens_in)
        packed = prepare_for_cpu_sampling(model)(tokens_in)
    torch.testing.assert_close(packed, reference, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"need a float32 model on the CPU, not torch\.bfloat16"):
        prepare_for_cpu_sampling(LlamaLM(TINY).to(torch.bfloat16))
