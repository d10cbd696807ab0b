"""Sampling options on a tiny random model: seeds, truncation, stop tokens, log-probabilities,
per-row parameters and budgets, the three finish reasons, and two models decoding together
(that one also on the real SmolLM2 weights)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from modelcore.config import ModelConfig
from modelcore.cpu_sampling import int8_supported, prepare_for_cpu_sampling
from modelcore.model import LlamaLM
from modelcore.sampling import (
    NUCLEUS_CANDIDATES,
    SamplingParams,
    _nucleus,
    _Rows,
    _sample,
    decode,
    generate,
    generate_together,
)
from modelcore.tokenizer import Tokenizer

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


def test_draws_follow_the_tempered_truncated_distribution() -> None:
    """Each row's token is drawn with the probability softmax(logits / T) gives it after the
    top-k cut: frequencies over many rows (their own seeds) within 4 standard errors, and the
    cut tokens never drawn."""
    rows, temperature = 20_000, 0.5
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -100.0, 1.5])
    params = [SamplingParams(temperature=temperature, top_k=5)] * rows
    batch = _Rows.build(params, list(range(rows)), len(logits), torch.device("cpu"))
    token, _ = _sample(logits.expand(rows, -1).clone(), batch)
    kept = logits.topk(5).indices
    expected = torch.zeros_like(logits)
    expected[kept] = torch.softmax(logits[kept] / temperature, dim=0)
    observed = torch.bincount(token, minlength=len(logits)).float() / rows
    error = (expected * (1 - expected) / rows).sqrt()
    assert torch.all((observed - expected).abs() <= 4 * error + 1e-9), (observed, expected)
    assert observed[[4, 5]].sum() == 0


def nucleus_by_a_full_sort(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """The top-p definition, the whole vocabulary sorted."""
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    drop = (probs.cumsum(dim=-1) - probs) >= top_p
    return logits.scatter(1, order, ordered.masked_fill(drop, float("-inf")))


@pytest.mark.parametrize(
    ("scale", "sizes", "sort"),
    [(4.0, [105, 1], 0), (2.5, [2056, 69], 1), (0.01, [17965, 9920], 2)],
    ids=["nucleus among the fewest candidates", "among the most", "past them"],
)
def test_the_nucleus_is_the_one_a_full_sort_finds(
    scale: float, sizes: list[int], sort: int
) -> None:
    """`_nucleus` sorts only the largest logits when they hold the nucleus, more of them when
    they do not, and the whole vocabulary last (`sort` says which of these the largest nucleus
    needs); a row without a cut keeps every logit."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 20_000, generator=generator) * scale
    top_p = torch.tensor([[0.9], [0.5], [float("inf")]])
    kept = _nucleus(logits, top_p)
    assert torch.equal(kept, nucleus_by_a_full_sort(logits, top_p))
    assert (kept > float("-inf")).sum(dim=-1).tolist() == [*sizes, 20_000]
    bounds = (0, *NUCLEUS_CANDIDATES, 20_000)
    assert bounds[sort] < max(sizes) <= bounds[sort + 1]


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
    assert completion.finish_reason == "context"
    with pytest.raises(ValueError, match="prompt of 40 tokens leaves no room"):
        generate(model, [list(range(40))], SamplingParams(), pad_id=0)
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        generate(model, [[1], []], SamplingParams(), pad_id=0)


def test_a_long_prompt_does_not_shorten_the_other_rows(model: LlamaLM) -> None:
    long_prompt, short_prompt = list(range(1, 36)), [4, 5, 6]
    params = SamplingParams(max_new_tokens=12, temperature=0)
    long_row, short_row = generate(model, [long_prompt, short_prompt], params, pad_id=0)
    assert len(long_row.tokens) == TINY.max_seq_len - len(long_prompt)
    assert long_row.finish_reason == "context"
    [alone] = generate(model, [short_prompt], params, pad_id=0)
    assert short_row.tokens == alone.tokens and len(alone.tokens) == 12
    assert short_row.finish_reason == alone.finish_reason == "length"


def test_the_three_finish_reasons_in_one_batch(model: LlamaLM) -> None:
    prompts = [[4, 5, 6], [10, 11, 12, 13, 14], list(range(1, 34))]
    greedy = generate(model, prompts[:1], SamplingParams(max_new_tokens=8, temperature=0), pad_id=0)
    stop = greedy[0].tokens[2]
    rows = [
        SamplingParams(max_new_tokens=20, temperature=0, stop_ids=(stop,)),
        SamplingParams(max_new_tokens=4, temperature=0),
        SamplingParams(max_new_tokens=20, temperature=0),
    ]
    completions = generate(model, prompts, rows, pad_id=0)
    assert [c.finish_reason for c in completions] == ["stop", "length", "context"]
    first = greedy[0].tokens.index(stop)
    assert completions[0].tokens == greedy[0].tokens[: first + 1]
    assert [len(c.tokens) for c in completions[1:]] == [4, TINY.max_seq_len - 33]
    # Exactly as many new tokens as the context has room for is the length asked for.
    [full] = generate(model, [prompts[2]], SamplingParams(max_new_tokens=7), pad_id=0)
    assert (len(full.tokens), full.finish_reason) == (7, "length")


ROW_PARAMS = [
    SamplingParams(max_new_tokens=9, temperature=0),
    SamplingParams(max_new_tokens=14, temperature=0.7, top_p=0.9, seed=11),
    SamplingParams(max_new_tokens=12, temperature=1.5, top_k=5, seed=12),
    SamplingParams(max_new_tokens=10, temperature=1.0, seed=13),
]
ROW_PROMPTS = [[4, 5, 6], [10, 11, 12, 13, 14], [7], [20, 21, 22, 23]]


def test_rows_with_their_own_parameters_sample_as_each_alone(model: LlamaLM) -> None:
    batched = generate(model, ROW_PROMPTS, ROW_PARAMS, pad_id=0)
    for prompt, params, completion in zip(ROW_PROMPTS, ROW_PARAMS, batched, strict=True):
        [alone] = generate(model, [prompt], [params], pad_id=0)
        assert completion.tokens == alone.tokens
        assert len(alone.tokens) == params.max_new_tokens
        torch.testing.assert_close(completion.logprobs, alone.logprobs, atol=1e-5, rtol=0)
    # Greedy beside sampled rows is still greedy, and the sampled rows really sample.
    assert batched[0].tokens == tokens(model, max_new_tokens=9, temperature=0)[0]
    assert (
        batched[3].tokens
        != generate(
            model, [ROW_PROMPTS[3]], [SamplingParams(max_new_tokens=10, seed=14)], pad_id=0
        )[0].tokens
    )


def test_one_seed_for_all_rows_gives_each_row_its_own_draws(model: LlamaLM) -> None:
    params = SamplingParams(max_new_tokens=16, seed=5)
    first, second = generate(model, [[4, 5, 6]] * 2, params, pad_id=0)
    assert first.tokens != second.tokens
    [alone] = generate(model, [[4, 5, 6]], params, pad_id=0)
    assert first.tokens == alone.tokens
    with pytest.raises(ValueError, match="2 prompts but 1 sampling parameters"):
        generate(model, [[4], [5]], [params], pad_id=0)


def test_rows_with_the_same_prompt_share_one_prefill(model: LlamaLM) -> None:
    prompts = [[4, 5, 6], [10, 11, 12, 13, 14], [4, 5, 6], [4, 5, 6]]
    params = [SamplingParams(max_new_tokens=8, seed=seed) for seed in (1, 2, 3, 4)]
    seen = []
    hook = model.decoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    try:
        batched = generate(model, prompts, params, pad_id=0)
    finally:
        hook.remove()
    # The prefill ran on the two distinct prompts (padded to five tokens), the steps on all rows.
    assert seen[0] == (2, 5) and set(seen[1:]) == {(4, 1)}
    for prompt, row_params, completion in zip(prompts, params, batched, strict=True):
        [alone] = generate(model, [prompt], [row_params], pad_id=0)
        assert completion.tokens == alone.tokens
        torch.testing.assert_close(completion.logprobs, alone.logprobs, atol=1e-5, rtol=0)


def test_two_models_decode_together_as_each_alone(model: LlamaLM) -> None:
    torch.manual_seed(1)
    other = LlamaLM(TINY).eval()
    seen: list[tuple[str, list[int | None]]] = []
    together = generate_together(
        [
            decode(model, ROW_PROMPTS[:2], ROW_PARAMS[:2], pad_id=0),
            decode(other, ROW_PROMPTS[2:], ROW_PARAMS[2:], pad_id=0),
        ],
        on_tokens=[lambda t: seen.append(("a", t)), lambda t: seen.append(("b", t))],
    )
    assert together[0] == generate(model, ROW_PROMPTS[:2], ROW_PARAMS[:2], pad_id=0)
    assert together[1] == generate(other, ROW_PROMPTS[2:], ROW_PARAMS[2:], pad_id=0)
    # A step each in turn, until the one with the longer budget goes on alone.
    assert [name for name, _ in seen] == ["a", "b"] * 12 + ["a"] * 2
    twice = [decode(model, [[4]], SamplingParams(), pad_id=0) for _ in range(2)]
    with pytest.raises(RuntimeError, match="already decoding"):
        generate_together(twice, on_tokens=[None, None])
    assert model.decoder.caches is None


def test_a_callback_that_raises_frees_both_models_caches(model: LlamaLM) -> None:
    torch.manual_seed(2)
    other = LlamaLM(TINY).eval()

    def refuse(_: list[int | None]) -> None:
        raise KeyError("lease lost")

    decodings = [
        decode(model, [[4]], SamplingParams(), pad_id=0),
        decode(other, [[5]], SamplingParams(), pad_id=0),
    ]
    with pytest.raises(KeyError, match="lease lost"):
        generate_together(decodings, on_tokens=[None, refuse])
    assert model.decoder.caches is None and other.decoder.caches is None


@pytest.mark.smollm2
def test_a_pair_sampled_together_equals_each_side_alone_on_smollm2(
    smollm2: tuple[LlamaLM, Tokenizer],
    smollm2_comparison: tuple[list[int], list[SamplingParams]],
) -> None:
    """As a comparison is sampled: one version at two temperatures in one batch, or two
    versions (here the float32 model and its packed CPU copy) decoding side by side."""
    base, tokenizer = smollm2
    prompt, sides = smollm2_comparison
    pad = tokenizer.pad_id
    alone = [generate(base, [prompt], [side], pad_id=pad)[0] for side in sides]
    assert alone[0].tokens != alone[1].tokens
    assert [c.tokens for c in generate(base, [prompt] * 2, sides, pad_id=pad)] == [
        c.tokens for c in alone
    ]
    packed = prepare_for_cpu_sampling(copy.deepcopy(base))
    [packed_alone] = generate(packed, [prompt], [sides[1]], pad_id=pad)
    [first], [second] = generate_together(
        [
            decode(base, [prompt], [sides[0]], pad_id=pad),
            decode(packed, [prompt], [sides[1]], pad_id=pad),
        ],
        on_tokens=[None, None],
    )
    assert first.tokens == alone[0].tokens and second.tokens == packed_alone.tokens


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


def blocks_as_operators(int8: LlamaLM) -> LlamaLM:
    """A copy of an int8-prepared model whose blocks decode as PyTorch operators, not as the
    kernel's one call (`Int8Block` unwrapped): the reference for that call."""
    operators = copy.deepcopy(int8)
    operators.decoder.layers = nn.ModuleList(b.block for b in operators.decoder.layers)
    return operators


@pytest.mark.skipif(not int8_supported(), reason="the int8 kernel needs AVX2")
def test_the_int8_blocks_one_call_step_is_their_operators_step() -> None:
    """Prompts of three lengths (left-padded rows, pad columns masked), each row at its own
    temperature: the same tokens, and log-probabilities equal up to float32 rounding."""
    torch.manual_seed(0)
    fused = prepare_for_cpu_sampling(LlamaLM(TINY).eval(), int8=True)
    operators = blocks_as_operators(fused)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15]]
    params = [SamplingParams(max_new_tokens=24, temperature=t, seed=3) for t in (0.0, 0.8, 1.2)]
    ours = generate(fused, prompts, params, pad_id=0)
    reference = generate(operators, prompts, params, pad_id=0)
    assert [c.tokens for c in ours] == [c.tokens for c in reference]
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


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
