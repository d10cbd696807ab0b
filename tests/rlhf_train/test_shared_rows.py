"""Shared-prompt rows (a prompt once, its responses after it, each seeing the prompt and itself)
compute what separate rows do: the reward model's scores and ranking loss, DPO's
log-probabilities and loss, and SFT's packed rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close
from train_fixtures import tiny_policy, tiny_tokenizer

from modelcore.chat import Message
from modelcore.checkpoint import load_checkpoint
from modelcore.model import LlamaLM, ScalarModel
from rlhf.train.data import MARGINS, Comparison
from rlhf.train.dpo import DPOObjective, preference_batch, reference_logprobs
from rlhf.train.encoding import (
    ChatEncoder,
    Exchange,
    TokenBatch,
    content_mask,
    share_prompts,
    token_logprobs,
)
from rlhf.train.losses import chosen_nll, dpo_loss, margin_ranking_loss
from rlhf.train.ranking import RankedPair, RankedRow, pair_batch, ranked_rows, ranking_batch
from rlhf.train.reward import RankingObjective
from rlhf.train.sft import LanguageModelObjective, sft_batch

CPU = torch.device("cpu")


def comparisons() -> list[Comparison]:
    common = {"safety": "both_safe", "guideline": "helpfulness", "batch": "2026-W48"}
    return [
        Comparison(
            prompt="What is the capital of France?",
            chosen="Paris.",
            rejected="I think it is Lyon, the biggest city.",
            edited="The capital of France is Paris, on the Seine, since the tenth century.",
            strength="better",
            **common,
        ),
        Comparison(
            prompt="And of Italy?",
            context=(Message("user", "Hi there"), Message("assistant", "Hello! Ask away.")),
            chosen="Rome",
            rejected="Milan, of course",
            strength="significantly_better",
            **common,
        ),
    ]


def reward_model(vocab_size: int) -> ScalarModel:
    model = ScalarModel.from_policy(tiny_policy(vocab_size))
    torch.nn.init.normal_(model.score.weight)  # a zero head would score every text alike
    return model


def separate_scores(model: ScalarModel, exchanges: list[Exchange], pad_id: int) -> torch.Tensor:
    """Each exchange in a right-padded row of its own, as the reward model trained before."""
    batch = TokenBatch.of(exchanges, pad_id, CPU)
    return model.reward(batch.tokens, batch.lengths).float()


def test_a_reward_row_holds_its_prompt_once_and_scores_as_separate_rows() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    model = reward_model(encoder.tokenizer.vocab_size)
    rows, skipped = ranked_rows(encoder, comparisons(), MARGINS["small"], 256, seed=0)
    assert skipped == 0 and [len(r.exchanges) for r in rows] == [3, 2]
    assert [len(r.pairs) for r in rows] == [3, 1]
    batch = ranking_batch(rows, CPU)
    layouts = [share_prompts(r.exchanges) for r in rows]
    assert all(len(groups) == 1 for groups in layouts)  # one prompt per row
    # One row, no padding: each comparison's prompt once, then its responses.
    assert tuple(batch.rows.tokens.shape) == (1, sum(len(groups[0]) for groups in layouts))

    rows_ = batch.rows
    with torch.no_grad():
        values = model(rows_.tokens, positions=rows_.positions, mask=rows_.attention)
        shared = values.flatten()[rows_.last]
        separate = separate_scores(model, [e for r in rows for e in r.exchanges], encoder.pad_id)
    assert_close(shared, separate, atol=1e-5, rtol=0)


def test_comparisons_of_any_lengths_lie_end_to_end_and_score_as_they_would_alone() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    model = reward_model(encoder.tokenizer.vocab_size)
    common = {"safety": "both_safe", "guideline": "helpfulness", "batch": "2026-W48"}
    story = "Paris grew from an island town on the Seine into a capital."
    long = Comparison(
        prompt="Tell me the history of Paris, in some detail please.",
        chosen=story,
        rejected=story.upper(),
        strength="better",
        **common,
    )
    short = [
        Comparison(prompt="Hi?", chosen="Hello.", rejected="Go.", strength="better", **common),
        Comparison(prompt="Ok?", chosen="Yes.", rejected="No.", strength="better", **common),
    ]
    rows, _ = ranked_rows(encoder, [short[0], long, short[1]], MARGINS["small"], 512, seed=0)
    lengths = [len(share_prompts(r.exchanges)[0]) for r in rows]
    batch = ranking_batch(rows, CPU)
    assert tuple(batch.rows.tokens.shape) == (1, sum(lengths))  # no padding

    pairs = [(r.exchanges[b], r.exchanges[w]) for r in rows for b, w, _ in r.pairs]
    with torch.no_grad():
        values = model(batch.rows.tokens, positions=batch.rows.positions, mask=batch.rows.attention)
        scores = values.flatten()[batch.rows.last]
        expected = separate_scores(model, [e for pair in pairs for e in pair], encoder.pad_id)
    assert_close(scores[batch.better], expected[0::2], atol=1e-5, rtol=0)
    assert_close(scores[batch.worse], expected[1::2], atol=1e-5, rtol=0)


def test_the_ranking_loss_and_its_gradient_are_those_of_separate_rows() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    shared_model = reward_model(encoder.tokenizer.vocab_size)
    separate_model = reward_model(encoder.tokenizer.vocab_size)
    rows, _ = ranked_rows(encoder, comparisons(), MARGINS["small"], 256, seed=0)

    loss, metrics = RankingObjective(shared_model)(ranking_batch(rows, CPU))
    scores = separate_scores(separate_model, [e for r in rows for e in r.exchanges], encoder.pad_id)
    better, worse, margins, offset = [], [], [], 0
    for row in rows:
        for b, w, m in row.pairs:
            better, worse, margins = [*better, offset + b], [*worse, offset + w], [*margins, m]
        offset += len(row.exchanges)
    expected = margin_ranking_loss(scores[better], scores[worse], torch.tensor(margins)).sum()
    assert_close(loss, expected, atol=1e-5, rtol=1e-5)
    assert metrics["accuracy"] == (scores[better] > scores[worse]).float().sum()

    loss.backward()
    expected.backward()
    for (name, shared), (_, separate) in zip(
        shared_model.named_parameters(), separate_model.named_parameters(), strict=True
    ):
        assert_close(shared.grad, separate.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_responses_are_shuffled_within_rows_reproducibly_and_pairs_follow_them() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    row = comparisons()[0]
    texts = {tuple(encoder.exchange(row, t).ids): t for t in (row.chosen, row.rejected, row.edited)}

    def orders(seed: int) -> list[tuple[str, ...]]:
        rows, _ = ranked_rows(encoder, [row] * 12, MARGINS["small"], 256, seed=seed)
        for ranked in rows:  # each pair still names its better and worse responses
            named = [
                (texts[tuple(ranked.exchanges[b].ids)], texts[tuple(ranked.exchanges[w].ids)], m)
                for b, w, m in ranked.pairs
            ]
            assert named == row.ranked_pairs(MARGINS["small"])
        return [tuple(texts[tuple(e.ids)] for e in ranked.exchanges) for ranked in rows]

    assert orders(0) == orders(0)
    assert orders(0) != orders(1)
    assert len(set(orders(0))) > 1  # not one fixed order


def test_a_too_long_response_leaves_out_its_pairs_and_keeps_the_others() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    row = comparisons()[0]
    lengths = {t: len(encoder.exchange(row, t).ids) for t in (row.chosen, row.rejected, row.edited)}
    assert lengths[row.edited] > max(lengths[row.chosen], lengths[row.rejected])
    limit = max(lengths[row.chosen], lengths[row.rejected])
    rows, skipped = ranked_rows(encoder, [row], MARGINS["small"], limit, seed=0)
    # edited > chosen and edited > rejected go; chosen > rejected stays, with its margin.
    assert skipped == 2 and len(rows) == 1
    assert len(rows[0].exchanges) == 2
    assert [m for _, _, m in rows[0].pairs] == [MARGINS["small"]["better"]]
    rows, skipped = ranked_rows(encoder, [row], MARGINS["small"], limit - 1, seed=0)
    assert rows == [] and skipped == 3


def test_independent_pairs_keep_their_own_prompts() -> None:
    """Pairs whose responses have different prompts (as benchmarks/rlhf_step.py builds them)
    lay each exchange out with its own prompt."""
    encoder = ChatEncoder(tiny_tokenizer())
    model = reward_model(encoder.tokenizer.vocab_size)
    first, second = comparisons()
    a, b = encoder.exchange(first, first.chosen), encoder.exchange(second, second.chosen)
    assert [len(g.exchanges) for g in share_prompts([a, a, b])] == [2, 1]
    batch = pair_batch([RankedPair(a, b, 1.0), RankedPair(b, a, 0.0)], CPU)
    assert batch.rows.tokens.shape[1] == 2 * (len(a.ids) + len(b.ids))
    loss, _ = RankingObjective(model)(batch)
    scores = separate_scores(model, [a, b], encoder.pad_id)
    expected = margin_ranking_loss(scores[[0, 1]], scores[[1, 0]], torch.tensor([1.0, 0.0]))
    assert_close(loss, expected.sum(), atol=1e-5, rtol=1e-5)


def separate_dpo_logprobs(
    model: LlamaLM, encoder: ChatEncoder, pairs: list[tuple[Exchange, Exchange]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed content log-probabilities [N, 2] and content token counts [N, 2], with chosen and
    rejected in rows of their own (DPO before shared rows)."""
    batch = TokenBatch.of([c for c, _ in pairs] + [r for _, r in pairs], encoder.pad_id, CPU)
    mask = content_mask(batch.tokens, batch.response_mask, encoder.tokenizer)
    sums = token_logprobs(model, batch.tokens, mask).sum(1)
    return torch.stack(sums.chunk(2), 1), torch.stack(mask.sum(1).chunk(2), 1)


def dpo_pairs(encoder: ChatEncoder) -> list[tuple[Exchange, Exchange]]:
    return [(encoder.exchange(r, r.chosen), encoder.exchange(r, r.rejected)) for r in comparisons()]


def dpo_rows(encoder: ChatEncoder) -> tuple[list[RankedRow], list[tuple[Exchange, Exchange]]]:
    """The comparisons as DPO trains on them, and their pairs in order: the first comparison's
    edited response makes three pairs of its three responses, the second gives one."""
    rows, skipped = ranked_rows(encoder, comparisons(), MARGINS["none"], 256, seed=0)
    assert skipped == 0
    pairs = [(r.exchanges[b], r.exchanges[w]) for r in rows for b, w, _ in r.pairs]
    return rows, pairs


def test_dpo_logprobs_and_loss_are_those_of_separate_rows() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    model = tiny_policy(encoder.tokenizer.vocab_size)
    rows, pairs = dpo_rows(encoder)
    assert len(pairs) == 4
    reference = torch.tensor([[-30.0, -40.0], [-35.0, -40.0], [-30.0, -35.0], [-10.0, -12.0]])
    batch = preference_batch(rows, reference, encoder.tokenizer, CPU)
    # Each comparison's prompt once and each of its responses once: the edited comparison is
    # its prompt and its three responses, where separate pairs would repeat each of them.
    assert batch.ranking.rows.tokens.shape[1] == sum(
        len(r.exchanges[0].prompt) + sum(len(e.response) for e in r.exchanges) for r in rows
    )
    assert batch.ranking.rows.target_mask.sum() == sum(
        len(e.response) for r in rows for e in r.exchanges
    )

    loss, metrics = DPOObjective(model, beta=0.1, nll_weight=0.2)(batch)
    logprobs, tokens = separate_dpo_logprobs(model, encoder, pairs)
    assert_close(batch.logprobs(model), logprobs, atol=1e-5, rtol=1e-5)
    assert_close(batch.tokens(), tokens.float(), atol=0, rtol=0)
    preference = dpo_loss(logprobs[:, 0], logprobs[:, 1], reference[:, 0], reference[:, 1], 0.1)
    nll = chosen_nll(logprobs[:, 0], tokens[:, 0])
    assert_close(loss, (preference + 0.2 * nll).sum(), atol=1e-5, rtol=1e-5)
    assert_close(metrics["nll"], nll.sum(), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert_close(
            reference_logprobs(model, encoder.tokenizer, rows, batch_size=1),
            logprobs,
            atol=1e-5,
            rtol=1e-5,
        )


def test_packed_sft_rows_compute_what_separate_rows_do() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    model = tiny_policy(encoder.tokenizer.vocab_size)
    exchanges = [e for pair in dpo_pairs(encoder) for e in pair]
    # Two packed rows of a micro-batch, uneven as a step's last rows often are.
    packed = sft_batch([exchanges[:-1], exchanges[-1:]], CPU)
    assert tuple(packed.tokens.shape) == (1, sum(len(e.ids) for e in exchanges))  # no padding
    # As SFT computes them (without `previous`: packed exchanges do not share prompts) ...
    per_token = token_logprobs(
        model,
        packed.tokens,
        packed.target_mask,
        positions=packed.positions,
        mask=packed.attention,
    )
    separate = TokenBatch.of(exchanges, encoder.pad_id, CPU)
    expected = token_logprobs(model, separate.tokens, separate.response_mask).sum(1)
    assert_close(packed.per_exchange(per_token), expected, atol=1e-5, rtol=1e-5)
    # ... through the row's own method, and as SFT's loss.
    assert_close(packed.logprobs(model), per_token, atol=0, rtol=0)
    loss, _ = LanguageModelObjective(model)(packed)
    assert_close(loss, -expected.sum(), atol=1e-4, rtol=1e-5)


@pytest.mark.smollm2
def test_shared_rows_match_separate_rows_on_smollm2(smollm2_checkpoint: Path) -> None:
    loaded = load_checkpoint(smollm2_checkpoint)
    policy, encoder = loaded.model.float().eval(), ChatEncoder(loaded.tokenizer)
    rm = ScalarModel.from_policy(policy)
    torch.nn.init.normal_(rm.score.weight, std=0.02)
    rows, _ = ranked_rows(encoder, comparisons(), MARGINS["small"], 1024, seed=0)
    batch = ranking_batch(rows, CPU).rows
    with torch.no_grad():
        values = rm(batch.tokens, positions=batch.positions, mask=batch.attention)
        separate = separate_scores(rm, [e for r in rows for e in r.exchanges], encoder.pad_id)
        assert_close(values.flatten()[batch.last], separate, atol=1e-5, rtol=0)

        dpo, pairs = dpo_rows(encoder)
        reference = torch.zeros(len(pairs), 2)
        shared = preference_batch(dpo, reference, encoder.tokenizer, CPU)
        logprobs, _ = separate_dpo_logprobs(policy, encoder, pairs)
        assert_close(shared.logprobs(policy), logprobs, atol=1e-4, rtol=1e-5)


def test_a_row_of_one_pair_lists_its_responses_once() -> None:
    encoder = ChatEncoder(tiny_tokenizer())
    row = comparisons()[0]
    chosen, rejected = encoder.exchange(row, row.chosen), encoder.exchange(row, row.rejected)
    edited = encoder.exchange(row, row.edited)
    pairs = [RankedPair(chosen, rejected, 1.0), RankedPair(edited, chosen, 0.0)]
    assert RankedRow.of(pairs) == RankedRow((chosen, rejected, edited), ((0, 1, 1.0), (2, 0, 0.0)))
