"""Batched sampling with a preallocated KV cache.

Prompts of different lengths are left-padded so that every row's next token is at the same
column; each row's rotary positions start at 0 at its first real token, and pad keys are masked
out, so a row gives the same tokens alone or in a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from modelcore.model import LlamaLM


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
    """What one prompt produced. `tokens` includes the stop token when one ended it."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"  # "stop" or "length"


OnTokens = Callable[[list[int | None]], None]


@torch.inference_mode()
def generate(
    model: LlamaLM,
    prompts: Sequence[Sequence[int]],
    params: SamplingParams,
    *,
    pad_id: int,
    on_tokens: OnTokens | None = None,
) -> list[Completion]:
    """Sample a completion for every prompt.

    `logprobs` are the log-probabilities of the sampled tokens under the temperature-scaled
    distribution before top-k/top-p (under the raw distribution when greedy): what PPO compares
    against. `on_tokens` receives, after every step, each row's new token (None once finished),
    for streaming.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    context = model.config.max_seq_len
    longest = max(len(p) for p in prompts)
    if longest >= context:
        raise ValueError(
            f"prompt of {longest} tokens leaves no room in the model's context of {context}"
        )
    device = model.decoder.embed.weight.device
    batch = len(prompts)
    total = min(longest + params.max_new_tokens, context)
    generator = None
    if params.seed is not None:
        generator = torch.Generator(device=device).manual_seed(params.seed)

    tokens = torch.full((batch, longest), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(batch, total, dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt) :] = torch.tensor(list(prompt), device=device)
        valid[row, longest - len(prompt) : longest] = True
    positions = (valid[:, :longest].cumsum(1) - 1).clamp(min=0)

    # Prefill: causal over the cache, minus pad keys; a pad query attends only to itself so
    # its softmax row is never empty (its output is never read).
    causal = torch.ones(longest, total, dtype=torch.bool, device=device).tril()
    eye = torch.eye(longest, total, dtype=torch.bool, device=device)
    mask = (causal & valid[:, None, None, :]) | eye

    stops = torch.tensor(params.stop_ids or [-1], device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    completions = [Completion() for _ in prompts]
    slots = torch.arange(total, device=device)
    model.decoder.setup_caches(batch, total)
    try:
        logits = model(
            tokens, positions=positions, mask=mask, slots=slots[:longest], last_only=True
        )
        next_position = positions[:, -1:] + 1
        for step in range(longest, total):
            token, logprob = _sample(logits[:, -1].float(), params, generator)
            new = token.masked_fill(finished, pad_id)
            emitted = [
                None if done else t for done, t in zip(finished.tolist(), new.tolist(), strict=True)
            ]
            for completion, tok, lp in zip(completions, emitted, logprob.tolist(), strict=True):
                if tok is not None:
                    completion.tokens.append(tok)
                    completion.logprobs.append(lp)
            if on_tokens is not None:
                on_tokens(emitted)
            stopped = torch.isin(new, stops) & ~finished
            for row in stopped.nonzero().flatten().tolist():
                completions[row].finish_reason = "stop"
            finished |= stopped
            if bool(finished.all()) or step + 1 == total:
                break
            valid[:, step] = True
            logits = model(
                new[:, None],
                positions=next_position,
                mask=valid[:, None, None, :],
                slots=slots[step : step + 1],
            )
            next_position = next_position + 1
    finally:
        model.decoder.clear_caches()
    return completions


def _sample(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row from float32 logits [B, V], and its log-probability."""
    if params.temperature == 0:
        logprobs = torch.log_softmax(logits, dim=-1)
        token = logits.argmax(dim=-1)
        return token, logprobs.gather(1, token[:, None]).squeeze(1)
    logits = logits / params.temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    if params.top_k:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # Drop a token once the tokens before it already reach top_p; the first always stays.
        drop = (cumulative - torch.softmax(ordered, dim=-1)) >= params.top_p
        logits = logits.scatter(1, order, ordered.masked_fill(drop, float("-inf")))
    probs = torch.softmax(logits, dim=-1)
    # Gumbel-max through an exponential draw: no host sync, unlike torch.multinomial.
    noise = torch.empty_like(probs).exponential_(1, generator=generator)
    token = (probs / noise).argmax(dim=-1)
    return token, logprobs.gather(1, token[:, None]).squeeze(1)
