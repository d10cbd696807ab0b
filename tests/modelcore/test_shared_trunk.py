"""Policies that share their bottom blocks, sampled as one batch (`modelcore.shared_trunk`): which
blocks are shared, and that every row samples as its own policy alone (tiny random models, and
SmolLM2 in int8 as the generate worker serves it)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from modelcore.config import ModelConfig
from modelcore.cpu_sampling import int8_supported, prepare_for_cpu_sampling
from modelcore.model import LlamaLM
from modelcore.sampling import SamplingParams, generate
from modelcore.shared_trunk import CommonParts, SharedTrunk, common_parts, model_digests
from modelcore.tokenizer import Tokenizer

# Untied, so that a version can have an LM head of its own.
TINY = ModelConfig.from_name(
    "smollm2-135m",
    tie_embeddings=False,
    vocab_size=96,
    dim=32,
    n_layers=4,
    n_heads=4,
    n_kv_heads=2,
    intermediate_size=48,
    max_seq_len=40,
)


def retrained(policy: LlamaLM, top: int, *, seed: int, head: bool = False) -> LlamaLM:
    """A copy of `policy` whose top `top` blocks and final norm moved, as the loop's cheap
    training mode leaves a new version (`train_layers=top`), and its LM head if `head`."""
    other = copy.deepcopy(policy)
    generator = torch.Generator().manual_seed(seed)
    changed = [*other.decoder.layers[len(other.decoder.layers) - top :], other.decoder.norm]
    if head:
        changed.append(other.lm_head)
    with torch.no_grad():
        for module in changed:
            for weight in module.parameters():
                noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
                weight.add_(noise * weight.std().clamp(min=0.1) * 0.3)
    return other


@pytest.fixture(scope="module")
def base() -> LlamaLM:
    torch.manual_seed(0)
    return LlamaLM(TINY).eval()


def test_digests_find_the_parts_versions_share(base: LlamaLM) -> None:
    top2, top3 = retrained(base, 2, seed=1), retrained(base, 3, seed=2)
    digests = model_digests(base)
    assert len(digests.blocks) == TINY.n_layers
    assert common_parts(digests, model_digests(copy.deepcopy(base))) == CommonParts(4, head=True)
    assert common_parts(digests, model_digests(top2)) == CommonParts(2, head=True)
    assert common_parts(digests, model_digests(top2), model_digests(top3)).blocks == 1
    assert common_parts(digests, model_digests(retrained(base, 2, seed=1, head=True))) == (
        CommonParts(2, head=False)
    )
    # The final norm alone moved: every block is shared, the norm stays each policy's own.
    assert common_parts(digests, model_digests(retrained(base, 0, seed=3))).blocks == 4
    embedding = copy.deepcopy(base)
    with torch.no_grad():
        embedding.decoder.embed.weight[5] += 1
    assert common_parts(digests, model_digests(embedding)) == CommonParts(0, head=False)
    torch.manual_seed(0)
    longer = LlamaLM(dataclasses.replace(TINY, max_seq_len=48))
    assert common_parts(digests, model_digests(longer)).blocks == 0


PROMPTS = [[4, 5, 6], [4, 5, 6], [10, 11, 12, 13, 14], [4, 5, 6], [7]]
PARAMS = [
    SamplingParams(max_new_tokens=9, temperature=0.0),
    SamplingParams(max_new_tokens=12, temperature=0.8, top_p=0.9, seed=11),
    SamplingParams(max_new_tokens=6, temperature=1.2, top_k=5, seed=12),
    SamplingParams(max_new_tokens=12, temperature=1.0, seed=13),
    SamplingParams(max_new_tokens=40, temperature=0.7, stop_ids=(3,), seed=14),
]


@pytest.mark.parametrize("head_moved", [False, True], ids=["shared head", "own heads"])
def test_every_row_samples_as_its_own_policy_alone(base: LlamaLM, head_moved: bool) -> None:
    policies = [base, retrained(base, 2, seed=1), retrained(base, 3, seed=2, head=head_moved)]
    rows = [2, 1, 2]
    common = common_parts(*map(model_digests, policies))
    assert common == CommonParts(1, head=not head_moved)
    trunk = SharedTrunk(policies, common, rows=rows)
    seen: dict[str, list[tuple[int, ...]]] = {"trunk": [], "head": []}

    def record(name: str):
        return lambda _, args: seen[name].append(tuple(args[0].shape[:2]))

    hooks = [
        base.decoder.layers[0].register_forward_pre_hook(record("trunk")),
        base.lm_head.register_forward_pre_hook(record("head")),
    ]
    try:
        together = generate(trunk, PROMPTS, PARAMS, pad_id=0)  # type: ignore[arg-type]
    finally:
        for hook in hooks:
            hook.remove()
    # The trunk's prefill ran on the three distinct prompts, its steps on all five rows; a
    # shared head on all five rows at once, else base's head on base's two.
    assert seen["trunk"][0] == (3, 5) and set(seen["trunk"][1:]) == {(5, 1)}
    assert set(seen["head"]) == {(2, 1) if head_moved else (5, 1)}
    assert trunk.caches is None
    start = 0
    for policy, count in zip(policies, rows, strict=True):
        for row in range(start, start + count):
            [alone] = generate(policy, [PROMPTS[row]], [PARAMS[row]], pad_id=0)
            assert together[row].tokens == alone.tokens
            assert together[row].finish_reason == alone.finish_reason
            torch.testing.assert_close(together[row].logprobs, alone.logprobs, atol=1e-5, rtol=0)
        start += count
    # The versions really differ: the same prompt and seed give other tokens.
    [other] = generate(policies[0], [PROMPTS[3]], [PARAMS[3]], pad_id=0)
    assert other.tokens != together[3].tokens


def test_a_trunk_refuses_what_it_cannot_sample(base: LlamaLM) -> None:
    common = CommonParts(2, head=True)
    with pytest.raises(ValueError, match="shares 1 to 4 blocks, not 0"):
        SharedTrunk([base, base], CommonParts(0, head=True), rows=[1, 1])
    with pytest.raises(ValueError, match="2 policies but 1 row counts"):
        SharedTrunk([base, base], common, rows=[2])
    with pytest.raises(ValueError, match="at least one row"):
        SharedTrunk([base, base], common, rows=[1, 0])
    with pytest.raises(ValueError, match="same configuration"):
        SharedTrunk([base, LlamaLM(dataclasses.replace(TINY, dim=64))], common, rows=[1, 1])
    with pytest.raises(ValueError, match="samples 2 rows, not 3"):
        generate(SharedTrunk([base, base], common, rows=[1, 1]), [[4]] * 3, PARAMS[0], pad_id=0)  # type: ignore[arg-type]


@pytest.mark.smollm2
@pytest.mark.skipif(not int8_supported(), reason="the int8 sampling mode needs AVX2")
def test_two_smollm2_versions_sample_on_one_int8_trunk_as_each_alone(
    smollm2: tuple[LlamaLM, Tokenizer],
    smollm2_comparison: tuple[list[int], list[SamplingParams]],
) -> None:
    """The generate worker's case after a week of the loop: the published policy (top two
    blocks trained) beside its parent, each one response, in the int8 mode."""
    model, tokenizer = smollm2
    parent, child = copy.deepcopy(model), retrained(model, 2, seed=1)
    common = common_parts(model_digests(parent), model_digests(child))
    assert common == CommonParts(model.config.n_layers - 2, head=True)  # tied to the embedding
    parent, child = (prepare_for_cpu_sampling(m, int8=True) for m in (parent, child))
    prompt, sides = smollm2_comparison
    pad = tokenizer.pad_id
    trunk = SharedTrunk([parent, child], common, rows=[1, 1])
    first, second = generate(trunk, [prompt] * 2, sides, pad_id=pad)  # type: ignore[arg-type]
    assert first.tokens == generate(parent, [prompt], [sides[0]], pad_id=pad)[0].tokens
    assert second.tokens == generate(child, [prompt], [sides[1]], pad_id=pad)[0].tokens
