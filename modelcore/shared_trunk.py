"""Policies that differ only in their top blocks, sampled as one batch.

The loop's cheap training modes change a policy's top N blocks (or LoRA adapters merged into
them) and its final norm, and leave the token embedding and every block below as they were. So
the two versions a batch serves after its first week are one network up to a branch point.
Decoding a token on a CPU is bound by reading the weights; sampling each version's row through
its own copy of the shared blocks reads them twice, and a pair takes as long as two responses.
`SharedTrunk` runs the shared blocks once over every row (a batch of two costs about what a
batch of one does), then each policy's own top blocks and final norm over its rows, and the LM
head once over every row when the policies' heads are the same (a frozen embedding tied to it).

Which parts are shared is decided from digests of the weights (`model_digests`), taken when a
model loads: a prepared model's linear layers (int8, or packed for oneDNN) no longer hold
weights that can be compared, and a digest is bit for bit.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from modelcore.model import KVCache, LlamaLM, copy_cache_rows, distinct_rows, kv_caches


@dataclass(frozen=True)
class ModelDigests:
    """Digests of a model's parts: `base` its configuration and token embedding, `blocks` each
    decoder block bottom first, `head` its LM head (the embedding again when they are tied)."""

    base: str
    blocks: tuple[str, ...]
    head: str


def model_digests(model: LlamaLM) -> ModelDigests:
    """Take them before the model is prepared for sampling."""
    decoder = model.decoder
    base = hashlib.sha256(repr(model.config).encode())
    return ModelDigests(
        base=_hash_tensors(base, decoder.embed).hexdigest(),
        blocks=tuple(_hash_tensors(hashlib.sha256(), b).hexdigest() for b in decoder.layers),
        head=_hash_tensors(hashlib.sha256(), model.lm_head).hexdigest(),
    )


def _hash_tensors(digest: hashlib._Hash, module: nn.Module) -> hashlib._Hash:
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().contiguous().cpu()
        digest.update(f"{name} {data.dtype} {tuple(data.shape)}".encode())
        digest.update(memoryview(data.view(torch.uint8).numpy()))
    return digest


@dataclass(frozen=True)
class CommonParts:
    blocks: int  # how many bottom blocks are the same
    head: bool  # whether the LM heads are


def common_parts(*digests: ModelDigests) -> CommonParts:
    """What models with these digests have in common: nothing unless their configurations and
    token embeddings are the same too."""
    if len({d.base for d in digests}) != 1:
        return CommonParts(blocks=0, head=False)
    depth = 0
    for blocks in zip(*(d.blocks for d in digests), strict=True):
        if len(set(blocks)) != 1:
            break
        depth += 1
    return CommonParts(blocks=depth, head=len({d.head for d in digests}) == 1)


class SharedTrunk:
    """Several policies sampled as one batch through the bottom blocks they have in common
    (`common`, from `common_parts`): the first rows[0] rows are policies[0]'s, the next rows[1]
    policies[1]'s, and so on. Pass it to `modelcore.sampling.decode` in place of a policy.

    The embedding and shared blocks used are policies[0]'s, each policy's own top blocks and
    final norm its own, and the LM head policies[0]'s for every row when the heads are the same
    (SmolLM2 ties it to the frozen embedding: a fifth of the weights, read once), else each
    policy's own. The trunk's KV caches cover every row, each policy's branch caches its rows.
    Rows with the same prompt share the trunk's prefill (and only that: above the trunk they
    are different models).
    """

    # modelcore.sampling leaves the prefill of repeated prompts to this class.
    shares_prefill = True

    def __init__(
        self, policies: Sequence[LlamaLM], common: CommonParts, rows: Sequence[int]
    ) -> None:
        if len(policies) != len(rows) or not policies:
            raise ValueError(f"{len(policies)} policies but {len(rows)} row counts")
        config = policies[0].config
        if any(policy.config != config for policy in policies):
            raise ValueError("policies of one trunk need the same configuration")
        if not 0 < common.blocks <= config.n_layers:
            raise ValueError(f"a trunk shares 1 to {config.n_layers} blocks, not {common.blocks}")
        if any(n < 1 for n in rows):
            raise ValueError(f"every policy needs at least one row, got {list(rows)}")
        self.config = config
        self.embed = policies[0].decoder.embed
        self._trunk = policies[0].decoder.layers[: common.blocks]
        self._rope = policies[0].decoder.rotary
        self._branches = [policy.decoder.layers[common.blocks :] for policy in policies]
        self._norms = [policy.decoder.norm for policy in policies]
        self._heads = [policy.lm_head for policy in policies]
        self._shared_head = common.head
        ends = list(itertools.accumulate(rows))
        self._rows = [slice(end - n, end) for n, end in zip(rows, ends, strict=True)]
        self._batch = ends[-1]
        self.caches: list[KVCache] | None = None
        self._branch_caches: list[list[KVCache]] = []
        self._prefilled = False

    @property
    def decoder(self) -> SharedTrunk:
        # modelcore.sampling reaches a policy's KV caches and embedding through `decoder`.
        return self

    def setup_caches(self, batch: int, max_len: int) -> None:
        if batch != self._batch:
            raise ValueError(f"this trunk samples {self._batch} rows, not {batch}")
        like = self.embed.weight
        self.caches = kv_caches(self.config, len(self._trunk), batch, max_len, like=like)
        self._branch_caches = [
            kv_caches(self.config, len(branch), rows.stop - rows.start, max_len, like=like)
            for branch, rows in zip(self._branches, self._rows, strict=True)
        ]
        self._prefilled = False

    def clear_caches(self) -> None:
        self.caches = None
        self._branch_caches = []

    def __call__(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor,
        mask: torch.Tensor,
        slots: torch.Tensor,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits [B, T, vocab] (or [B, 1, vocab]), each row from its own policy."""
        if self.caches is None:
            raise ValueError("a SharedTrunk samples through KV caches: set them up first")
        rope = self._rope(tokens.shape[1], positions, self.embed.weight.dtype)
        # The prefill, into empty caches, is the one call where equal rows compute alike.
        repeats = None if self._prefilled else distinct_rows(tokens)
        self._prefilled = True
        trunk_rows = slice(None) if repeats is None else repeats[0]
        x = _through(
            self._trunk,
            self.caches,
            self.embed(tokens[trunk_rows]),
            _rows(rope, trunk_rows),
            mask[trunk_rows],
            slots,
        )
        if repeats is not None:
            x = x[repeats[1]]
            copy_cache_rows(self.caches, repeats[1])
        hidden = torch.cat(
            [
                norm(_through(branch, caches, x[rows], _rows(rope, rows), mask[rows], slots))
                for branch, norm, caches, rows in zip(
                    self._branches, self._norms, self._branch_caches, self._rows, strict=True
                )
            ]
        )
        if last_only:
            hidden = hidden[:, -1:]
        if self._shared_head:
            return self._heads[0](hidden)
        return torch.cat(
            [head(hidden[rows]) for head, rows in zip(self._heads, self._rows, strict=True)]
        )


def _rows(
    rope: tuple[torch.Tensor, torch.Tensor], rows: slice | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return rope[0][rows], rope[1][rows]


def _through(
    blocks: nn.ModuleList,
    caches: list[KVCache],
    x: torch.Tensor,
    rope: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    for block, cache in zip(blocks, caches, strict=True):
        x = block(x, rope, mask, cache, slots)
    return x
