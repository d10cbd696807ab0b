"""Block-causal attention over packed rows, computed as independent causal segments.

Packed training rows hold many sequences, each attending only to its own tokens (and, for
responses that share a prompt, to that prompt). A dense boolean mask over such a row makes every
query score every key of the row, most of them masked out: SDPA cannot skip masked blocks, and on
SmolLM2 rows of ~480 tokens made of ~100-token exchanges, attention was 15% of a training step.
A segment is instead the tokens one sequence sees, in row order (a response's prompt, then the
response): gathered into a batch of their own, right-padded, each segment is plain causal
attention, which costs the sum of the squared segment lengths, not the square of the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Segments:
    """Where each segment's tokens are in the flattened [B * T] rows, and which outputs it owns.

    index [S, W]: the flattened positions of each segment's tokens in order, right-padded (the
    padding points at position 0: a causal query never sees keys after it, and padded queries'
    outputs are dropped). kept [K]: the entries of the flattened [S * W] segments whose outputs
    are kept; target [K]: the flattened row positions they are written to. A token in several
    segments (a shared prompt) is kept from one of them; positions no segment keeps (a row's
    padding) come out as zeros.
    """

    index: torch.Tensor
    kept: torch.Tensor
    target: torch.Tensor

    @classmethod
    def of(
        cls,
        segments: Sequence[tuple[Sequence[int], int]],
        device: torch.device | None = None,
    ) -> Segments:
        """From (flattened positions, how many leading ones are context only) per segment: a
        segment keeps the outputs of its tokens after its context."""
        width = max(len(positions) for positions, _ in segments)
        index = torch.zeros(len(segments), width, dtype=torch.long)
        kept: list[int] = []
        target: list[int] = []
        for s, (positions, context) in enumerate(segments):
            index[s, : len(positions)] = torch.tensor(positions, dtype=torch.long)
            kept.extend(range(s * width + context, s * width + len(positions)))
            target.extend(positions[context:])
        return cls(
            index.to(device),
            torch.tensor(kept, dtype=torch.long, device=device),
            torch.tensor(target, dtype=torch.long, device=device),
        )

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of q [B, H, T, D] over k, v [B, H_kv, T, D] within segments: [B, T, H * D]."""
        batch, heads, length, head_dim = q.shape

        def gathered(x: torch.Tensor) -> torch.Tensor:
            flat = x.transpose(1, 2).reshape(batch * length, x.shape[1], head_dim)
            # index_select: its backward is index_add, several times faster on a CPU than
            # the accumulating index_put that indexing with a tensor backpropagates through.
            picked = flat.index_select(0, self.index.flatten())
            return picked.view(*self.index.shape, x.shape[1], head_dim).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            gathered(q),
            gathered(k),
            gathered(v),
            is_causal=True,
            enable_gqa=k.shape[1] != heads,
        )
        kept = out.transpose(1, 2).reshape(-1, heads * head_dim).index_select(0, self.kept)
        rows = kept.new_zeros(batch * length, heads * head_dim).index_copy(0, self.target, kept)
        return rows.view(batch, length, heads * head_dim)
