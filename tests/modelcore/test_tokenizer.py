from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gguf
import pytest

from modelcore.tokenizer import StreamDecoder, Tokenizer, TokenizerError

TEXTS = [
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b  # sum\n\n\tif x:\r\n\t\tpass\n",
    "spaces   and\n\n\nnewlines \t\t mixed   ",
    " leading space, trailing space ",
    "In 2024 the price rose 3.14159% to $1,000,000 (x=12345, y=-7e10).",
    "Emoji 👋🏽🎉 and CJK 你好，世界 and accents ñandú café — “quotes”.",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<repo_name>x<|endoftext|>",
    "Don't stop; it's what we'll do, isn't it?",
    "",
]


def _tokens(tokenizer: Tokenizer, text: str) -> list[str | None]:
    return [tokenizer.id_to_token(i) for i in tokenizer.encode(text)]


# --- SmolLM2 from its GGUF, against transformers ------------------------------------------------


@pytest.mark.smollm2
@pytest.mark.parametrize("text", TEXTS)
def test_gguf_tokenizer_encodes_like_transformers(
    smollm2_tokenizer: Tokenizer, hf_smollm2_tokenizer: Any, text: str
) -> None:
    assert smollm2_tokenizer.encode(text) == hf_smollm2_tokenizer.encode(text)


@pytest.mark.smollm2
@pytest.mark.parametrize("text", TEXTS)
def test_decode_round_trips(smollm2_tokenizer: Tokenizer, text: str) -> None:
    assert smollm2_tokenizer.decode(smollm2_tokenizer.encode(text)) == text


@pytest.mark.smollm2
def test_digits_are_split_individually(smollm2_tokenizer: Tokenizer) -> None:
    assert _tokens(smollm2_tokenizer, "12345") == list("12345")
    assert _tokens(smollm2_tokenizer, " 2024") == ["Ġ", "2", "0", "2", "4"]


@pytest.mark.smollm2
def test_non_ascii_numerals_are_isolated_as_llama_cpp_does(smollm2_tokenizer: Tokenizer) -> None:
    # transformers' GGUF loader gives ["ĠÂ", "²", "Â²"]: it knows no "smollm" pre-tokenizer.
    assert _tokens(smollm2_tokenizer, " ²²") == ["Ġ", "Â²", "Â²"]


@pytest.mark.smollm2
def test_special_tokens_and_template(smollm2_tokenizer: Tokenizer) -> None:
    tok = smollm2_tokenizer
    assert tok.vocab_size == 49152
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id) == (1, 2, 2, 0)
    assert (tok.bos_token, tok.eos_token) == ("<|im_start|>", "<|im_end|>")
    assert tok.token_to_id("<|im_end|>") == 2
    assert tok.special_ids == frozenset(range(17))
    assert "You are a helpful AI assistant named SmolLM" in (tok.chat_template or "")
    ids = tok.encode("<|im_start|>user\nHi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert tok.decode(ids, skip_special_tokens=True) == "user\nHi"


@pytest.mark.smollm2
def test_save_loads_in_transformers_and_back(smollm2_tokenizer: Tokenizer, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    smollm2_tokenizer.save(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    ours = Tokenizer.load(tmp_path)
    for text in TEXTS:
        expected = smollm2_tokenizer.encode(text)
        assert hf.encode(text) == expected
        assert ours.encode(text) == expected
        assert hf.decode(expected) == smollm2_tokenizer.decode(expected)
    assert hf.chat_template == ours.chat_template == smollm2_tokenizer.chat_template
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id) == (1, 2, 2)
    assert (ours.bos_id, ours.eos_id, ours.pad_id, ours.unk_id) == (1, 2, 2, 0)


@pytest.mark.smollm2
def test_load_reads_a_transformers_save_pretrained_directory(
    hf_smollm2_tokenizer: Any, tmp_path: Path
) -> None:
    hf_smollm2_tokenizer.save_pretrained(tmp_path)
    ours = Tokenizer.load(tmp_path)
    for text in TEXTS:
        assert ours.encode(text) == hf_smollm2_tokenizer.encode(text)
    assert ours.chat_template == hf_smollm2_tokenizer.chat_template
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 2)


# --- streaming ----------------------------------------------------------------------------------


def _stream(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    stream = StreamDecoder(tokenizer)
    return [stream.push(i) for i in ids] + [stream.flush()]


@pytest.mark.smollm2
def test_stream_decoder_emits_only_complete_characters(smollm2_tokenizer: Tokenizer) -> None:
    text = "Grüße 👋🏽 你好世界 — done 🎉!"
    ids = smollm2_tokenizer.encode(text)
    pieces = _stream(smollm2_tokenizer, ids)
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)
    # Some emoji take several tokens, so text was held back at least once.
    assert "" in pieces[:-1]


def test_stream_decoder_keeps_spaces_a_lone_decode_would_strip(
    llama_style_tokenizer: Tokenizer,
) -> None:
    tok = llama_style_tokenizer
    ids = tok.encode("Hello Hello there")
    assert tok.decode([tok.token_to_id("▁H")]) == "H"  # alone, its space is stripped
    assert "".join(_stream(tok, ids)) == "Hello Hello there"


# --- a GGUF file written here, and bad input ----------------------------------------------------


def _write_gguf(
    path: Path, *, model: str = "gpt2", pre: str = "smollm", tokens: bool = True
) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_tokenizer_pre(pre)
    if tokens:
        writer.add_token_list(["<|endoftext|>", "h", "i", "Ġ", "hi", "1"])
        writer.add_token_types([3, 1, 1, 1, 1, 1])
        writer.add_token_merges(["h i"])
        writer.add_eos_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_from_gguf_builds_a_byte_level_bpe(tmp_path: Path) -> None:
    tok = Tokenizer.from_gguf(gguf.GGUFReader(_write_gguf(tmp_path / "tiny.gguf")))
    assert tok.encode("hi hi<|endoftext|>11") == [4, 3, 4, 0, 5, 5]
    assert (tok.eos_id, tok.bos_id, tok.chat_template) == (0, None, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "llama"}, "tokenizer model is 'llama'; only byte-level BPE"),
        ({"pre": "qwen2"}, "pre-tokenizer 'qwen2' is not supported"),
        ({"tokens": False}, "GGUF metadata has no 'tokenizer.ggml.tokens'"),
    ],
)
def test_from_gguf_rejects_unsupported_files(
    tmp_path: Path, options: dict[str, Any], message: str
) -> None:
    path = _write_gguf(tmp_path / "bad.gguf", **options)
    with pytest.raises(TokenizerError, match=message) as caught:
        Tokenizer.from_gguf(path)
    assert str(path) in str(caught.value)


def test_from_gguf_reports_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"missing\.gguf: no such file"):
        Tokenizer.from_gguf(tmp_path / "missing.gguf")
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"not a gguf file at all")
    with pytest.raises(TokenizerError, match=r"corrupt\.gguf: not a readable GGUF file"):
        Tokenizer.from_gguf(corrupt)


def test_load_reports_missing_and_corrupt_files(
    llama_style_tokenizer: Tokenizer, tmp_path: Path
) -> None:
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: no such file"):
        Tokenizer.load(tmp_path / "nowhere")

    llama_style_tokenizer.save(tmp_path)
    config = tmp_path / "tokenizer_config.json"
    config.write_text('{"eos_token": "</s>",')
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: not valid JSON"):
        Tokenizer.load(tmp_path)
    config.write_text(json.dumps({"eos_token": "<|im_end|>"}))
    with pytest.raises(TokenizerError, match=r"eos token '<\|im_end\|>' is not in the vocabulary"):
        Tokenizer.load(tmp_path)
    config.unlink()
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: no such file"):
        Tokenizer.load(tmp_path)

    (tmp_path / "tokenizer.json").write_text('{"model": ')
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: not a valid tokenizer file"):
        Tokenizer.load(tmp_path)


def test_load_accepts_added_token_dicts_and_named_templates(
    llama_style_tokenizer: Tokenizer, tmp_path: Path
) -> None:
    # The shapes found in Hugging Face model directories.
    llama_style_tokenizer.save(tmp_path)
    config = {
        "bos_token": {"__type": "AddedToken", "content": "<s>", "special": True},
        "eos_token": {"__type": "AddedToken", "content": "</s>", "special": True},
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "chat"},
        ],
    }
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.load(tmp_path)
    assert (tok.bos_id, tok.eos_id, tok.chat_template) == (1, 2, "chat")
