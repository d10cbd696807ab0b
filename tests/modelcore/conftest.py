"""Shared fixtures: SmolLM2 (model and tokenizer) built by us and by transformers, and a small
Llama-2-style sentencepiece tokenizer. The SmolLM2 ones take seconds to build, so they are
session-scoped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelcore.assets import smollm2_gguf_path
from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.checkpoint import save_checkpoint
from modelcore.gguf_import import import_gguf
from modelcore.model import LlamaLM
from modelcore.sampling import SamplingParams
from modelcore.tokenizer import Tokenizer
from tests.llama_tokenizer import llama_style_tokenizer as build_llama_style_tokenizer


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    return smollm2_gguf_path()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path) -> Tokenizer:
    return Tokenizer.from_gguf(smollm2_gguf)


@pytest.fixture(scope="session")
def hf_smollm2_tokenizer(smollm2_gguf: Path) -> Any:
    """transformers' own tokenizer for the same GGUF file: the reference."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="session")
def llama_style_tokenizer() -> Tokenizer:
    """Shaped like Llama 2's tokenizer.json: a space becomes "▁", one is prepended to the text,
    and decoding strips one leading space. Tokenizing a piece of a text alone therefore differs
    from tokenizing it in place, which chat masking and stream decoding must cope with."""
    return build_llama_style_tokenizer([("▁", "H"), ("e", "l"), ("el", "l"), ("ell", "o")])


@pytest.fixture(scope="session")
def smollm2(smollm2_gguf: Path) -> tuple[LlamaLM, Tokenizer]:
    """Our float32 SmolLM2-135M-Instruct and its tokenizer, imported from the GGUF file."""
    model, tokenizer = import_gguf(smollm2_gguf)
    return model.eval(), tokenizer


@pytest.fixture(scope="session")
def hf_smollm2(smollm2_gguf: Path) -> Any:
    """transformers' LlamaForCausalLM on the same GGUF file, float32: the parity reference."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="session")
def smollm2_checkpoint(
    smollm2: tuple[LlamaLM, Tokenizer], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """SmolLM2 written once in Tandem's checkpoint format."""
    model, tokenizer = smollm2
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "smollm2")


@pytest.fixture(scope="session")
def smollm2_comparison(
    smollm2: tuple[LlamaLM, Tokenizer],
) -> tuple[list[int], list[SamplingParams]]:
    """A comparison's request to SmolLM2: a chat prompt's ids, and the sampling parameters of
    its two sides (two temperatures and seeds, the chat's stop tokens, 24 tokens)."""
    _, tokenizer = smollm2
    template = ChatTemplate.for_tokenizer(tokenizer)
    dialogue = [Message("user", "Give me two tips for a good night's sleep.")]
    prompt = encode_dialogue(tokenizer, template, dialogue, add_generation_prompt=True).ids
    stops = tuple(stop_ids(tokenizer, template))
    sides = [
        SamplingParams(max_new_tokens=24, temperature=0.7, top_p=0.9, stop_ids=stops, seed=1),
        SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.9, stop_ids=stops, seed=2),
    ]
    return prompt, sides
