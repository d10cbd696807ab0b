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

from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.model import LlamaLM
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import Prompt


@dataclass(frozen=True)
class Exchange:
    ids: list[int]
    prompt_len: int  # ids[prompt_len:] is the response, through its end-of-turn token

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


@dataclass
class PackedBatch:
    """Several exchanges per row, each attending only to itself and with positions from 0.

    tokens, positions and target_mask [B, L]; attention_mask boolean [B, 1, L, L].
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    target_mask: torch.Tensor
    attention_mask: torch.Tensor


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


def packed_batch(
    rows: Sequence[Sequence[Exchange]], pad_id: int, device: torch.device
) -> PackedBatch:
    width = max(sum(len(e.ids) for e in row) for row in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros(len(rows), width, dtype=torch.long)
    targets = torch.zeros(len(rows), width, dtype=torch.bool)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: padding
    for r, row in enumerate(rows):
        start = 0
        for index, exchange in enumerate(row):
            end = start + len(exchange.ids)
            tokens[r, start:end] = torch.tensor(exchange.ids)
            positions[r, start:end] = torch.arange(len(exchange.ids))
            targets[r, start + exchange.prompt_len : end] = True
            segments[r, start:end] = index
            start = end
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    # Padding forms one more segment, so no query row is fully masked (which would give NaN).
    attention = (segments[:, :, None] == segments[:, None, :]) & causal
    return PackedBatch(
        tokens.to(device), positions.to(device), targets.to(device), attention[:, None].to(device)
    )


def token_logprobs(
    model: LlamaLM,
    tokens: torch.Tensor,
    targets: torch.Tensor,
    **decoder_kwargs: torch.Tensor,
) -> torch.Tensor:
    """log π(token t | tokens < t) where `targets` [B, T] is True (t ≥ 1), zero elsewhere: [B, T].

    The LM head runs only on the positions that predict a masked token: on responses a fraction
    of the sequence, and the head is a fifth of SmolLM2's compute per token.
    """
    hidden = model.decoder(tokens, **decoder_kwargs)
    predicts = targets[:, 1:]
    logits = model.lm_head(hidden[:, :-1][predicts]).float()
    picked = logits.log_softmax(-1).gather(1, tokens[:, 1:][predicts][:, None]).squeeze(1)
    out = torch.zeros(tokens.shape, dtype=picked.dtype, device=tokens.device)
    out[:, 1:][predicts] = picked
    return out


def content_mask(batch: TokenBatch, tokenizer: Tokenizer) -> torch.Tensor:
    """The response mask without special tokens (end of turn and the like): Llama 3 masks the
    formatting tokens out of the DPO loss, so the loss is about what was said."""
    special = torch.tensor(sorted(tokenizer.special_ids), device=batch.tokens.device)
    return batch.response_mask & ~torch.isin(batch.tokens, special)
