"""Batched sampling with a preallocated KV cache.

Prompts of different lengths are left-padded so that every row's next token is at the same
column; each row's rotary positions start at 0 at its first real token, and pad keys are masked
out. Every row has its own sampling parameters, its own random generator and its own token
budget, so a row gives the same tokens alone or in a batch.

`decode` is the decoding loop as a generator, one step per `next()`; `generate` runs one to the
end, and `generate_together` advances several, each on its own model, a step each in turn, so
two model versions answer the same prompt side by side. (Versions that share their bottom
blocks do better as one decoding, `modelcore.shared_trunk`; others, each in its own process,
`modelcore.sampling_process`.)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from modelcore.model import LlamaLM, distinct_rows

FinishReason = Literal["stop", "length", "context"]

# The KV cache's length is rounded up to a multiple of this many columns, so that calls with
# prompts of similar length share one cache shape: a compiled (CUDA-graph) decoding step is
# recorded once per shape, and the kept cache is reused (`Decoder.keep_caches`).
CACHE_COLUMNS_STEP = 128

# How many of a step's largest logits are sorted to find a top-p nucleus (`_nucleus`), tried in
# turn before the whole vocabulary.
NUCLEUS_CANDIDATES = (256, 4096)


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    stop_ids: tuple[int, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")


@dataclass
class Completion:
    """What one prompt produced. `tokens` includes the stop token when one ended it.

    finish_reason: "stop" (a stop token), "length" (max_new_tokens reached) or "context" (the
    model's context filled up first).
    """

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: FinishReason = "length"


OnTokens = Callable[[list[int | None]], None]
# One step per `next()`: each row's new token (None once the row is finished); the completions
# are the generator's return value.
Decoding = Generator[list[int | None], None, list[Completion]]


def generate(
    model: LlamaLM,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams],
    *,
    pad_id: int,
    on_tokens: OnTokens | None = None,
) -> list[Completion]:
    """Sample a completion for every prompt; see `decode` for `params`.

    `on_tokens` receives, after every step, each row's new token (None once finished), for
    streaming.
    """
    [completions] = generate_together(
        [decode(model, prompts, params, pad_id=pad_id)], on_tokens=[on_tokens]
    )
    return completions


def generate_together(
    decodings: Sequence[Decoding], *, on_tokens: Sequence[OnTokens | None]
) -> list[list[Completion]]:
    """Run several decodings (each on its own model: a model holds one KV cache) a step each in
    turn until all are done, so their rows stream side by side; `on_tokens[i]` sees decoding
    i's steps. Returns each decoding's completions.

    The steps run one after the other in this thread: on a CPU, two models in this process
    take as long together as one after the other; what they gain is that both stream from the
    first token. A decoding in a second process (`modelcore.sampling_process`) computes its
    next step while this thread runs the others, and models that share their bottom blocks are
    one decoding instead, through `modelcore.shared_trunk.SharedTrunk`.
    """
    if len(on_tokens) != len(decodings):
        raise ValueError(f"{len(decodings)} decodings but {len(on_tokens)} on_tokens callbacks")
    results: list[list[Completion] | None] = [None] * len(decodings)
    running = dict(enumerate(decodings))
    try:
        while running:
            for index, decoding in list(running.items()):
                try:
                    emitted = next(decoding)
                except StopIteration as end:
                    results[index] = end.value
                    del running[index]
                    continue
                callback = on_tokens[index]
                if callback is not None:
                    callback(emitted)
    finally:
        # A callback that raises leaves the others mid-way: closing them frees their caches.
        for decoding in decodings:
            decoding.close()
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class _Rows:
    """The batch's sampling parameters as tensors [B, 1], built once per call."""

    temperature: torch.Tensor  # 1 on greedy rows, so that their log-probabilities stay raw
    greedy: torch.Tensor | None  # [B] bool; None when no row is greedy
    sampled: list[int]  # the rows that draw noise
    generators: list[torch.Generator | None]
    top_k: torch.Tensor | None  # index of each row's k-th largest logit; None: no row cuts
    max_k: int
    top_p: torch.Tensor | None  # +inf on rows without a cut; None: no row cuts

    @classmethod
    def build(
        cls, rows: list[SamplingParams], seeds: list[int | None], vocab: int, device: torch.device
    ) -> _Rows:
        def column(values: list[float], dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)[:, None]

        greedy = [p.temperature == 0 for p in rows]
        ks = [min(p.top_k, vocab) or vocab for p in rows]
        return cls(
            temperature=column([p.temperature or 1.0 for p in rows], torch.float32),
            greedy=torch.tensor(greedy, device=device) if any(greedy) else None,
            sampled=[row for row, g in enumerate(greedy) if not g],
            generators=[
                None if seed is None else torch.Generator(device=device).manual_seed(seed)
                for seed in seeds
            ],
            top_k=column([k - 1 for k in ks], torch.long) if any(p.top_k for p in rows) else None,
            max_k=max(ks),
            top_p=(
                column([p.top_p if p.top_p < 1 else float("inf") for p in rows], torch.float32)
                if any(p.top_p < 1 for p in rows)
                else None
            ),
        )


def decode(
    model: LlamaLM,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams | Sequence[SamplingParams],
    *,
    pad_id: int,
) -> Decoding:
    """The decoding loop, a step per `next()`; the KV caches live from the first step until the
    generator ends or is closed. Bad arguments raise ValueError here, not at the first step.

    `params` is one SamplingParams for every row (row 0 draws from its seed, the others from
    seeds mixed from it, so rows differ) or one per row. Each row stops at its own budget:
    `max_new_tokens` or the end of the model's context, whichever comes first. `logprobs` are
    the log-probabilities of the sampled tokens under the temperature-scaled distribution
    before top-k/top-p (under the raw distribution when greedy): what PPO compares against.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    batch = len(prompts)
    if isinstance(params, SamplingParams):
        rows = [params] * batch
        seeds = [
            None if params.seed is None else _row_seed(params.seed, row) for row in range(batch)
        ]
    else:
        rows = list(params)
        if len(rows) != batch:
            raise ValueError(f"{batch} prompts but {len(rows)} sampling parameters")
        seeds = [p.seed for p in rows]
    context = model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest >= context:
        raise ValueError(
            f"prompt of {longest} tokens leaves no room in the model's context of {context}"
        )
    return _decoding(model, [list(p) for p in prompts], rows, seeds, pad_id)


def _row_seed(seed: int, row: int) -> int:
    """Row 0 keeps the seed (one prompt samples alike with one SamplingParams or a list of
    one); row i > 0 gets splitmix64 of (seed, i), so that it collides neither with the other
    rows nor with the nearby seeds other batches are given (seed + 1 for the next chunk)."""
    if row == 0:
        return seed
    mask = (1 << 64) - 1
    z = (seed + row * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


@torch.inference_mode()
def _decoding(
    model: LlamaLM,
    prompts: list[list[int]],
    rows: list[SamplingParams],
    seeds: list[int | None],
    pad_id: int,
) -> Decoding:
    if model.decoder.caches is not None:
        raise RuntimeError(
            "this model is already decoding (its KV caches are in use): give it one batch"
        )
    batch, context = len(prompts), model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    budgets = [
        min(p.max_new_tokens, context - len(prompt))
        for p, prompt in zip(rows, prompts, strict=True)
    ]
    steps = max(budgets)
    # Rows share columns, not positions: a short prompt beside a long one may need more columns
    # than the context has positions, while its own positions stay within the context.
    columns = -(-(longest + steps) // CACHE_COLUMNS_STEP) * CACHE_COLUMNS_STEP
    device = model.decoder.embed.weight.device
    sampling = _Rows.build(rows, seeds, model.config.vocab_size, device)
    stops = [set(p.stop_ids) for p in rows]

    tokens = torch.full((batch, longest), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(batch, columns, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt) :] = torch.tensor(prompt, device=device)
        valid[row, longest - len(prompt) : longest] = True
    positions = (valid[:, :longest].cumsum(1) - 1).clamp(min=0)

    # Prefill: causal over the cache, minus pad keys; a pad query attends only to itself so
    # its softmax row is never empty (its output is never read).
    causal = torch.ones(longest, columns, dtype=torch.bool, device=device).tril()
    eye = torch.eye(longest, columns, dtype=torch.bool, device=device)
    mask = (causal & valid[:, None, None, :]) | eye

    completions = [Completion() for _ in prompts]
    finished = [False] * batch
    slots = torch.arange(columns, device=device)
    # Rows with the same prompt (a comparison's two responses from one model) share a prefill:
    # each distinct prompt runs once, and its keys, values and logits are copied to its rows.
    # A model whose rows are different policies' (`SharedTrunk`) shares what it can itself.
    repeats = None if getattr(model, "shares_prefill", False) else distinct_rows(tokens)
    model.decoder.setup_caches(batch, columns)
    try:
        if repeats is None:
            logits = model(
                tokens, positions=positions, mask=mask, slots=slots[:longest], last_only=True
            )
        else:
            firsts, sources = repeats
            logits = model(
                tokens[firsts],
                positions=positions[firsts],
                mask=mask[firsts],
                slots=slots[:longest],
                last_only=True,
            )[sources]
            model.decoder.copy_cache_rows(sources)
        next_position = positions[:, -1:] + 1
        for step in range(steps):
            token, logprob = _sample(logits[:, -1].float(), sampling)
            emitted: list[int | None] = []
            for row, (tok, lp) in enumerate(zip(token.tolist(), logprob.tolist(), strict=True)):
                if finished[row]:
                    emitted.append(None)
                    continue
                completion = completions[row]
                completion.tokens.append(tok)
                completion.logprobs.append(lp)
                emitted.append(tok)
                if tok in stops[row]:
                    completion.finish_reason = "stop"
                    finished[row] = True
                elif len(completion.tokens) == budgets[row]:
                    completion.finish_reason = (
                        "length" if budgets[row] == rows[row].max_new_tokens else "context"
                    )
                    finished[row] = True
            yield emitted
            if all(finished):
                break
            # A finished row keeps decoding (its outputs are never read); its positions are
            # held inside the rotary table.
            column = longest + step
            valid[:, column] = True
            logits = model(
                token[:, None],
                positions=next_position,
                mask=valid[:, None, None, :],
                slots=slots[column : column + 1],
            )
            next_position = (next_position + 1).clamp(max=context - 1)
    finally:
        model.decoder.clear_caches()
    return completions


def _sample(logits: torch.Tensor, rows: _Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from float32 logits [B, V], and its log-probability."""
    if not rows.sampled:
        logprobs = torch.log_softmax(logits, dim=-1)
        token = logits.argmax(dim=-1)
        return token, logprobs.gather(1, token[:, None]).squeeze(1)
    raw = logits
    logits = logits / rows.temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    if rows.top_k is not None:
        kth = torch.topk(logits, rows.max_k, dim=-1).values.gather(1, rows.top_k)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if rows.top_p is not None:
        logits = _nucleus(logits, rows.top_p)
    # Inverse-CDF sampling: one uniform draw per row, no host sync (unlike torch.multinomial).
    # Each row draws from its own generator, so its tokens do not depend on the other rows.
    # (Gumbel-max needs a draw per vocabulary entry: on a CPU that and dividing the many
    # denormal probabilities by it took a seventh of a SmolLM2 pair's decoding step.)
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    draws = torch.zeros_like(cdf[:, :1])
    for row in rows.sampled:
        draws[row] = torch.rand(1, generator=rows.generators[row], device=draws.device)
    # Scaled by the total, which rounding leaves a little off 1, and kept below it. `right=True`
    # then finds the first token whose cumulative sum exceeds the draw: a token of probability
    # 0 never, as its sum equals its predecessor's.
    total = cdf[:, -1:]
    below = torch.nextafter(total, torch.zeros_like(total))
    token = torch.searchsorted(cdf, torch.minimum(draws * total, below), right=True).squeeze(1)
    if rows.greedy is not None:
        token = torch.where(rows.greedy, raw.argmax(dim=-1), token)
    return token, logprobs.gather(1, token[:, None]).squeeze(1)


def _nucleus(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """`logits` with every token outside each row's top-p nucleus at -inf: a token is dropped
    once the more likely tokens before it already reach top_p (the first always stays).

    A nucleus is mostly tens of tokens, and sorting all of a large vocabulary took a tenth of a
    SmolLM2 pair's decoding step (3.2 ms of 31): the largest logits are sorted (a partial sort:
    256 of SmolLM2's 49152 in 0.09 ms, 4096 in 0.64), which holds every row's nucleus whenever
    their probabilities reach top_p. At temperature 1 and top-p 0.9, 256 missed the nucleus in
    one step of eight; only when the NUCLEUS_CANDIDATES all miss is the whole vocabulary sorted.
    """
    uncut = torch.isinf(top_p)  # rows without a cut keep every logit
    total = torch.logsumexp(logits, dim=-1, keepdim=True)
    for candidates in NUCLEUS_CANDIDATES:
        ordered, order = torch.topk(logits, min(candidates, logits.shape[-1]), dim=-1)
        probs = (ordered - total).exp()
        if bool(((probs.sum(dim=-1, keepdim=True) >= top_p) | uncut).all()):
            break
    else:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
    drop = (probs.cumsum(dim=-1) - probs) >= top_p
    outside = logits.masked_fill(~uncut, float("-inf"))
    return outside.scatter(1, order, ordered.masked_fill(drop, float("-inf")))
