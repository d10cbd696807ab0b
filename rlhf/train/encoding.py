"""From prompts and responses to token tensors, the same way in every stage.

An exchange is a dialogue ending with one assistant response, cut right after the response's
end-of-turn token: exactly the prompt a policy samples from followed by the tokens it samples
(the stop token included). The reward model reads its score at that last token and the policy
losses cover the response only, so what was trained on and what is sampled look alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.model import LlamaLM
from modelcore.segments import Segments
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import Prompt


@dataclass(frozen=True)
class Exchange:
    ids: list[int]
    prompt_len: int  # ids[prompt_len:] is the response, through its end-of-turn token

    @property
    def prompt(self) -> list[int]:
        return self.ids[: self.prompt_len]

    @property
    def response(self) -> list[int]:
        return self.ids[self.prompt_len :]


class ChatEncoder:
    """A tokenizer and chat template, with the ids sampling needs."""

    def __init__(self, tokenizer: Tokenizer, template: str = "model") -> None:
        self.tokenizer = tokenizer
        self.template = ChatTemplate.by_name(template, tokenizer)
        self.stop_ids = tuple(stop_ids(tokenizer, self.template))
        pad = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token")
        self.pad_id: int = pad

    def prompt(self, prompt: Prompt) -> list[int]:
        """The ids a policy samples its response from."""
        return encode_dialogue(
            self.tokenizer, self.template, prompt.dialogue(), add_generation_prompt=True
        ).ids

    def exchange(self, prompt: Prompt, response: str) -> Exchange:
        dialogue = [*prompt.dialogue(), Message("assistant", response)]
        encoded = encode_dialogue(
            self.tokenizer, self.template, dialogue, add_generation_prompt=False
        )
        mask = encoded.assistant_mask
        end = len(mask) - mask[::-1].index(True)  # one past the response's last token
        start = end
        while start > 0 and mask[start - 1]:
            start -= 1
        return Exchange(ids=encoded.ids[:end], prompt_len=start)

    def response_text(self, tokens: Sequence[int]) -> str:
        """A sampled response as text, without its stop token."""
        if tokens and tokens[-1] in self.stop_ids:
            tokens = tokens[:-1]
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)


@dataclass
class TokenBatch:
    """Right-padded exchanges: tokens [B, T], lengths [B], response mask [B, T]."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    response_mask: torch.Tensor

    @classmethod
    def of(cls, exchanges: Sequence[Exchange], pad_id: int, device: torch.device) -> TokenBatch:
        width = max(len(e.ids) for e in exchanges)
        tokens = torch.full((len(exchanges), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(exchanges), width, dtype=torch.bool)
        for row, exchange in enumerate(exchanges):
            tokens[row, : len(exchange.ids)] = torch.tensor(exchange.ids)
            mask[row, exchange.prompt_len : len(exchange.ids)] = True
        lengths = torch.tensor([len(e.ids) for e in exchanges])
        return cls(tokens.to(device), lengths.to(device), mask.to(device))


@dataclass(frozen=True)
class SharedPrompt:
    """Exchanges of one prompt laid out as the prompt once, then each response after it.

    Each response attends to the prompt and to itself only, and its positions continue from the
    prompt's end, so it computes what it would in a row of its own (Llama 3 trains its reward
    model on such rows) while the prompt runs once.
    """

    exchanges: tuple[Exchange, ...]

    def __post_init__(self) -> None:
        if not self.exchanges or any(e.prompt != self.prompt for e in self.exchanges):
            raise ValueError("the exchanges of a shared prompt must all have that prompt")

    @property
    def prompt(self) -> list[int]:
        return self.exchanges[0].prompt

    def __len__(self) -> int:
        return len(self.prompt) + sum(len(e.response) for e in self.exchanges)


def share_prompts(exchanges: Sequence[Exchange]) -> list[SharedPrompt]:
    """The exchanges in order, each run of them with the same prompt sharing it."""
    groups: list[list[Exchange]] = []
    for exchange in exchanges:
        if groups and groups[-1][0].prompt == exchange.prompt:
            groups[-1].append(exchange)
        else:
            groups.append([exchange])
    return [SharedPrompt(tuple(group)) for group in groups]


@dataclass
class PackedBatch:
    """Prompts and responses in one row, each exchange attending only to itself (its prompt,
    which it may share with others, and its own response) and with positions from 0.

    tokens, positions and target_mask (the response tokens) [1, L]; attention: the segments
    (each response after its prompt) that attention runs within. previous [1, L]: the index of
    the token each token follows (-1 at the start of a prompt): a response's first token
    follows its prompt's last one, which is not the token before it once responses share a
    prompt. exchange [1, L]: the index of the exchange each response token belongs to (-1
    elsewhere), in the order given; last [N]: where each exchange's last token is.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    target_mask: torch.Tensor
    attention: Segments
    previous: torch.Tensor
    exchange: torch.Tensor
    last: torch.Tensor

    def logprobs(self, model: LlamaLM, targets: torch.Tensor | None = None) -> torch.Tensor:
        """`token_logprobs` of the row, on `targets` [1, L] (default: every response token)."""
        return token_logprobs(
            model,
            self.tokens,
            self.target_mask if targets is None else targets,
            previous=self.previous,
            positions=self.positions,
            mask=self.attention,
        )

    def per_exchange(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of `values` [1, L] over each exchange's response tokens: [N]."""
        on = self.exchange >= 0
        out = torch.zeros(len(self.last), dtype=values.dtype, device=values.device)
        return out.index_add(0, self.exchange[on], values[on])


def pack(exchanges: Sequence[Exchange], length: int) -> list[list[Exchange]]:
    """Group exchanges, in order, into rows of at most `length` tokens (greedy next-fit)."""
    rows: list[list[Exchange]] = []
    used = length
    for exchange in exchanges:
        if len(exchange.ids) > length:
            raise ValueError(f"an exchange of {len(exchange.ids)} tokens exceeds rows of {length}")
        if used + len(exchange.ids) > length:
            rows.append([])
            used = 0
        rows[-1].append(exchange)
        used += len(exchange.ids)
    return rows


def packed_batch(groups: Sequence[Exchange | SharedPrompt], device: torch.device) -> PackedBatch:
    """The exchanges (an exchange is a shared prompt of one) end to end in one row, with no
    padding. Attention runs within segments, so the row's length costs attention nothing, and
    splitting a micro-batch into rows would only add the padding that evens them out."""
    shared = [g if isinstance(g, SharedPrompt) else SharedPrompt((g,)) for g in groups]
    width = sum(len(g) for g in shared)
    tokens = torch.zeros(width, dtype=torch.long)
    positions = torch.zeros(width, dtype=torch.long)
    previous = torch.arange(-1, width - 1)
    exchange = torch.full((width,), -1, dtype=torch.long)
    # What each response sees: its prompt, then itself. The first response of a prompt also
    # owns the prompt's outputs; the others see it as context only.
    segments: list[tuple[list[int], int]] = []
    last: list[int] = []
    start = 0
    for group in shared:
        prompt = group.prompt
        end = start + len(prompt)
        tokens[start:end] = torch.tensor(prompt, dtype=torch.long)
        positions[start:end] = torch.arange(len(prompt))
        previous[start] = -1
        seen = list(range(start, end))
        for branch, member in enumerate(group.exchanges):
            begin, end = end, end + len(member.response)
            tokens[begin:end] = torch.tensor(member.response, dtype=torch.long)
            positions[begin:end] = torch.arange(len(prompt), len(member.ids))
            previous[begin] = start + len(prompt) - 1 if prompt else -1
            exchange[begin:end] = len(last)
            last.append(end - 1)
            segments.append((seen + list(range(begin, end)), len(seen) if branch else 0))
        start = end
    return PackedBatch(
        tokens[None].to(device),
        positions[None].to(device),
        (exchange >= 0)[None].to(device),
        Segments.of(segments, device),
        previous[None].to(device),
        exchange[None].to(device),
        torch.tensor(last, dtype=torch.long, device=device),
    )


def token_logprobs(
    model: LlamaLM,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    *,
    previous: torch.Tensor | None = None,
    **decoder_kwargs: torch.Tensor | Segments,
) -> torch.Tensor:
    """log π(token t | the tokens it follows) where `targets` [B, T] is True, zero elsewhere:
    [B, T]. `previous` [B, T] is the index of the token each one follows (default t - 1, so
    token 0 is never a target; see `PackedBatch`).

    The LM head runs only on the positions that predict a masked token: on responses a fraction
    of the sequence, and the head is a fifth of SmolLM2's compute per token.
    """
    hidden = model.decoder(tokens, **decoder_kwargs)
    if previous is None:
        previous = torch.arange(-1, tokens.shape[1] - 1, device=tokens.device).expand_as(tokens)
    rows, columns = (targets & (previous >= 0)).nonzero(as_tuple=True)
    picked = _head_logprobs(
        model.lm_head, hidden[rows, previous[rows, columns]], tokens[rows, columns]
    )
    out = torch.zeros(tokens.shape, dtype=picked.dtype, device=tokens.device)
    out[rows, columns] = picked
    return out


# Positions whose vocabulary-wide logits exist at once: float32 logits of SmolLM2's 49,152-token
# vocabulary take 200 KB a position, so a long batch's would take gigabytes. Up to this many the
# head runs at once: recomputing chunks costs time (SmolLM2's head with 2 blocks, 4 x 1024
# targets, forward and backward on this CPU: 11.2 s and 3.1 GB peak at once, 17.6 s and 1.5 GB
# in chunks of 1024).
LOGITS_CHUNK = 4096


def _head_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax(head(hidden)) at `targets` [N], in float32, LOGITS_CHUNK positions at a time.
    With gradients on, each chunk's logits are recomputed in the backward pass rather than kept
    (activation checkpointing): the head's arithmetic grows by a third, its memory stops
    growing with the batch."""

    def picked(part: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        logits = head(part).float()
        return logits.log_softmax(-1).gather(1, wanted[:, None]).squeeze(1)

    if len(hidden) <= LOGITS_CHUNK:
        return picked(hidden, targets)
    chunks = zip(hidden.split(LOGITS_CHUNK), targets.split(LOGITS_CHUNK), strict=True)
    if not torch.is_grad_enabled():
        return torch.cat([picked(part, wanted) for part, wanted in chunks])
    return torch.cat(
        [checkpoint(picked, part, wanted, use_reentrant=False) for part, wanted in chunks]
    )


def content_mask(
    tokens: torch.Tensor, response_mask: torch.Tensor, tokenizer: Tokenizer
) -> torch.Tensor:
    """The response mask without special tokens (end of turn and the like): Llama 3 masks the
    formatting tokens out of the DPO loss, so the loss is about what was said."""
    special = torch.tensor(sorted(tokenizer.special_ids), device=tokens.device)
    return response_mask & ~torch.isin(tokens, special)
