"""The Llama-architecture decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU.

One decoder serves three roles: with the LM head it is the policy (`LlamaLM`); with a scalar head
it is a reward model (read at the last real token) or a value model (read at every token)
(`ScalarModel`). The weights follow Hugging Face's layout and rotate-half RoPE, so importing a
Hugging Face checkpoint needs no permutation (GGUF files do, see `gguf_import`).

q/k/v and gate/up are fused into one matrix each: one matrix-vector product instead of three
(or two) per layer when sampling one token, where per-call overhead is what we pay for.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modelcore.config import ModelConfig
from modelcore.segments import Segments


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 and multiply by the weight after casting back, as Llama does:
        # in bf16 the order changes the result.
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rope_tables(config: ModelConfig, device: torch.device | None = None) -> torch.Tensor:
    """cos and sin of every position, stacked: float32 [2, max_seq_len, head_dim]."""
    half = torch.arange(0, config.head_dim, 2, dtype=torch.int64, device=device).float()
    inv_freq = 1.0 / (config.rope_base ** (half / config.head_dim))
    positions = torch.arange(config.max_seq_len, device=device).float()
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat([freqs, freqs], dim=-1)
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on [B, H, T, D] with cos/sin broadcastable to it."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class KVCache(nn.Module):
    """Preallocated keys and values of one layer, [B, H_kv, max_len, D], written in place.

    A fixed shape keeps every decoding step identical for `torch.compile` and avoids the
    reallocation that growing a cache by concatenation costs at every token.
    """

    def __init__(
        self,
        batch: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        super().__init__()
        shape = (batch, n_kv_heads, max_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(
        self, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H_kv, T, D] at cache positions `slots` [T]; return the whole cache.

        Positions come as a tensor, not an int, so a compiled decoding step is the same graph at
        every position. Fewer rows than the cache holds (a prefill shared by rows with the same
        prompt, `Decoder.copy_cache_rows`) go to its first rows, and only those come back.
        """
        rows = k.shape[0]
        if rows == self.k.shape[0]:
            self.k.index_copy_(2, slots, k)
            self.v.index_copy_(2, slots, v)
            return self.k, self.v
        self.k[:rows].index_copy_(2, slots, k)
        self.v[:rows].index_copy_(2, slots, v)
        return self.k[:rows], self.v[:rows]


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.n_kv_heads
        self.head_dim = config.head_dim
        kv_dim = config.n_kv_heads * config.head_dim
        self.wqkv = nn.Linear(config.dim, config.dim + 2 * kv_dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | Segments | None,
        cache: KVCache | None,
        slots: torch.Tensor | None,
    ) -> torch.Tensor:
        batch, length, _ = x.shape
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([self.n_heads * self.head_dim, kv_dim, kv_dim], dim=-1)
        q = q.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos, sin)
        if isinstance(mask, Segments):
            return self.wo(mask.attend(q, k, v))
        if cache is not None:
            k, v = cache.update(slots, k, v)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        return self.wo(out.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)), gate and up as one matrix."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(config.dim, 2 * config.intermediate_size, bias=False)
        self.w2 = nn.Linear(config.intermediate_size, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | Segments | None,
        cache: KVCache | None,
        slots: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope, mask, cache, slots)
        return x + self.feed_forward(self.ffn_norm(x))


class Decoder(nn.Module):
    """Token embedding, the blocks and the final norm: hidden states [B, T, dim]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.register_buffer("rope", rope_tables(config), persistent=False)
        self.caches: list[KVCache] | None = None
        # With keep_caches, `clear_caches` keeps the allocation for the next call of the same
        # shape: a compiled (CUDA-graph) decoding step is recorded against these very buffers.
        # Stale keys and values are harmless, as sampling masks every slot it has not written.
        self.keep_caches = False
        self._kept: list[KVCache] | None = None

    def setup_caches(self, batch: int, max_len: int) -> None:
        """Allocate a KV cache of `max_len` columns for `batch` sequences.

        Columns are not positions: left-padded rows with budgets of their own may need more
        columns than the context has positions, which bound each row's rotary positions.
        """
        weight = self.embed.weight
        kept = self._kept[0].k if self._kept else None
        shape = (batch, self.config.n_kv_heads, max_len, self.config.head_dim)
        if kept is not None and (kept.shape, kept.dtype, kept.device) == (
            shape,
            weight.dtype,
            weight.device,
        ):
            self.caches = self._kept
            return
        self.caches = kv_caches(self.config, len(self.layers), batch, max_len, like=weight)

    def copy_cache_rows(self, sources: torch.Tensor) -> None:
        """Row i of every KV cache becomes a copy of row sources[i], in place (a compiled step
        keeps its buffers)."""
        copy_cache_rows(self.caches or [], sources)

    def clear_caches(self) -> None:
        self._kept = self.caches if self.keep_caches else None
        self.caches = None

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | Segments | None = None,
        slots: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the decoder.

        tokens: [B, T]. positions: [B, T] rotary positions (default 0..T-1; left-padded rows
        start later). mask: boolean [B, 1, T, S], True where a query may attend a key, or the
        `Segments` of packed training rows; None means plain causal attention over these T
        tokens. slots: [T], where these tokens go in the KV cache, required once caches are set
        up (S is then the cache length).
        """
        if (self.caches is None) != (slots is None):
            raise ValueError("cache slots are needed exactly when KV caches are set up")
        if self.caches is not None and isinstance(mask, Segments):
            raise ValueError("segments are for packed training rows, not a KV cache")
        x = self.embed(tokens)
        rope = self.rotary(tokens.shape[1], positions, x.dtype)
        caches = self.caches or [None] * len(self.layers)
        for layer, cache in zip(self.layers, caches, strict=True):
            x = layer(x, rope, mask, cache, slots)
        return self.norm(x)

    def rotary(
        self, length: int, positions: torch.Tensor | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for `length` tokens at `positions` [B, T] (None: 0..length-1), in
        `dtype`, broadcastable to the attention's [B, H, T, D]."""
        if positions is None:
            if length > self.config.max_seq_len:
                raise ValueError(
                    f"sequence of {length} tokens exceeds the model's context of "
                    f"{self.config.max_seq_len}"
                )
            table = self.rope[:, :length]
            cos, sin = table[0][None, None], table[1][None, None]
        else:
            table = self.rope[:, positions]  # [2, B, T, D]
            cos, sin = table[0][:, None], table[1][:, None]
        return cos.to(dtype), sin.to(dtype)


def kv_caches(
    config: ModelConfig, layers: int, batch: int, max_len: int, *, like: torch.Tensor
) -> list[KVCache]:
    """Empty KV caches for `layers` blocks, in the dtype and on the device of `like`."""
    return [
        KVCache(batch, config.n_kv_heads, max_len, config.head_dim, like.dtype, like.device)
        for _ in range(layers)
    ]


def distinct_rows(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """For a prefill batch [B, T] in which some rows repeat (a comparison's two responses share
    their prompt): the first row of each distinct row, and for every row the index of its
    distinct row among those. None when every row differs."""
    keys = [tuple(row) for row in tokens.tolist()]
    distinct = list(dict.fromkeys(keys))
    if len(distinct) == len(keys):
        return None
    firsts = torch.tensor([keys.index(key) for key in distinct], device=tokens.device)
    sources = torch.tensor([distinct.index(key) for key in keys], device=tokens.device)
    return firsts, sources


def copy_cache_rows(caches: list[KVCache], sources: torch.Tensor) -> None:
    """Row i of every cache becomes a copy of row sources[i], in place."""
    for cache in caches:
        cache.k.copy_(cache.k.index_select(0, sources))
        cache.v.copy_(cache.v.index_select(0, sources))


class LlamaLM(nn.Module):
    """The decoder with its language-modelling head: the policy."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config)
        self.lm_head = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.decoder.embed.weight
        init_weights(self)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        last_only: bool = False,
        **decoder_kwargs: torch.Tensor | Segments | None,
    ) -> torch.Tensor:
        """Logits [B, T, vocab], or [B, 1, vocab] for the last position only when sampling."""
        hidden = self.decoder(tokens, **decoder_kwargs)
        if last_only:
            hidden = hidden[:, -1:]
        return self.lm_head(hidden)


class ScalarModel(nn.Module):
    """The decoder with `Linear(dim, 1)` instead of the LM head: a reward or value model."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = Decoder(config)
        self.score = nn.Linear(config.dim, 1, bias=False)
        init_weights(self)

    def forward(
        self, tokens: torch.Tensor, **decoder_kwargs: torch.Tensor | Segments | None
    ) -> torch.Tensor:
        """A value per token: [B, T] (the value model's use)."""
        return self.score(self.decoder(tokens, **decoder_kwargs)).squeeze(-1)

    def reward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One scalar per right-padded sequence, read at its last real token: [B].

        Causal attention means pad tokens after a sequence never change its earlier positions.
        """
        if int(lengths.min()) < 1 or int(lengths.max()) > tokens.shape[1]:
            raise ValueError(
                f"lengths {lengths.tolist()} out of range for {tokens.shape[1]} tokens"
            )
        values = self(tokens)
        return values.gather(1, (lengths - 1).unsqueeze(1).to(values.device)).squeeze(1)

    @classmethod
    def from_policy(cls, policy: LlamaLM) -> ScalarModel:
        """A reward or value model that starts from a policy's decoder and a zero head, on the
        policy's device and in its dtype."""
        model = cls(policy.config)
        model.decoder.load_state_dict(policy.decoder.state_dict())
        weight = next(policy.parameters())
        model.to(weight.device, weight.dtype)
        nn.init.zeros_(model.score.weight)
        return model


def init_weights(model: nn.Module) -> None:
    """GPT-2/Llama initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L)."""
    config: ModelConfig = model.config
    residual_std = 0.02 / math.sqrt(2 * config.n_layers)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            std = residual_std if name.endswith(("wo", "w2")) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
