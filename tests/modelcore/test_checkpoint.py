"""Tandem's checkpoint directory and the importers: round trips and every way a file goes bad."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from modelcore.checkpoint import (
    CheckpointError,
    checkpoint_digest,
    load_checkpoint,
    save_checkpoint,
)
from modelcore.cli import main
from modelcore.config import ModelConfig
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import save_hf_model
from modelcore.model import LlamaLM, ScalarModel
from modelcore.tokenizer import Tokenizer

TINY = ModelConfig.from_name(
    "smollm2-135m",
    vocab_size=128,
    dim=32,
    n_layers=2,
    n_heads=4,
    n_kv_heads=2,
    intermediate_size=40,
    max_seq_len=32,
)


@pytest.fixture
def saved(tmp_path: Path, llama_style_tokenizer: Tokenizer) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(LlamaLM(TINY), llama_style_tokenizer, tmp_path / "model")


def test_round_trip_keeps_weights_kind_and_tokenizer(
    saved: Path, tmp_path: Path, llama_style_tokenizer: Tokenizer
) -> None:
    torch.manual_seed(0)
    original = LlamaLM(TINY)
    loaded = load_checkpoint(saved)
    assert isinstance(loaded.model, LlamaLM)
    for name, tensor in original.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert loaded.model.lm_head.weight is loaded.model.decoder.embed.weight  # still tied
    assert loaded.tokenizer.encode("Hello world") == llama_style_tokenizer.encode("Hello world")
    assert {p.name for p in saved.iterdir()} == {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "manifest.json",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left

    reward = ScalarModel.from_policy(original)
    save_checkpoint(reward, llama_style_tokenizer, tmp_path / "rm")
    assert isinstance(load_checkpoint(tmp_path / "rm").model, ScalarModel)


def test_load_in_another_dtype(saved: Path) -> None:
    model = load_checkpoint(saved, dtype=torch.bfloat16).model
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_overwrite_is_explicit_and_replaces_whole(
    saved: Path, llama_style_tokenizer: Tokenizer
) -> None:
    digest = checkpoint_digest(saved)
    with pytest.raises(FileExistsError, match="already exists"):
        save_checkpoint(LlamaLM(TINY), llama_style_tokenizer, saved)
    assert checkpoint_digest(saved) == digest
    torch.manual_seed(1)
    save_checkpoint(LlamaLM(TINY), llama_style_tokenizer, saved, overwrite=True)
    assert checkpoint_digest(saved) != digest
    load_checkpoint(saved)


def test_missing_directory_or_file(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint directory not found"):
        load_checkpoint(tmp_path / "nowhere")
    (saved / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file listed in the manifest"):
        load_checkpoint(saved)


def test_corrupt_weights_are_detected(saved: Path) -> None:
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF  # one flipped byte deep in a tensor: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt"):
        load_checkpoint(saved)


def test_truncated_weights_with_a_matching_manifest(saved: Path) -> None:
    """Even when the manifest is rewritten to match, a truncated file is a clear error."""
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    _rewrite(saved, "model.safetensors", weights.read_bytes())
    with pytest.raises(CheckpointError, match="cannot read safetensors weights"):
        load_checkpoint(saved)


def test_config_that_does_not_match_the_weights(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    meta["model"]["intermediate_size"] = 48
    _rewrite(saved, "config.json", json.dumps(meta).encode())
    with pytest.raises(
        CheckpointError,
        match=r"w13\.weight has shape \(80, 32\), the config "
        r"needs \(96, 32\)",
    ):
        load_checkpoint(saved)


def test_config_with_unknown_keys_or_not_ours(saved: Path) -> None:
    meta = json.loads((saved / "config.json").read_text())
    _rewrite(
        saved, "config.json", json.dumps({**meta, "model": {**meta["model"], "moe": 8}}).encode()
    )
    with pytest.raises(CheckpointError, match=r"unknown keys \['moe'\]"):
        load_checkpoint(saved)
    _rewrite(saved, "config.json", json.dumps({"model_type": "llama"}).encode())
    with pytest.raises(CheckpointError, match="not a Tandem checkpoint"):
        load_checkpoint(saved)


def test_missing_or_corrupt_gguf(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="GGUF file not found"):
        import_gguf(tmp_path / "absent.gguf")
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + os.urandom(256))
    with pytest.raises(CheckpointError, match="not a readable GGUF file"):
        import_gguf(bogus)


def test_cli_import_and_export_of_a_hugging_face_directory(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["export", str(saved), str(tmp_path / "hf")]) == 0
    assert main(["import", str(tmp_path / "hf"), str(tmp_path / "again")]) == 0
    assert "imported" in capsys.readouterr().out
    original, again = load_checkpoint(saved).model, load_checkpoint(tmp_path / "again").model
    tokens = torch.randint(0, TINY.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.equal(original(tokens), again(tokens))
    assert main(["import", str(tmp_path / "hf"), str(tmp_path / "again")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_names_a_bad_hugging_face_config(
    saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = load_checkpoint(saved)
    save_hf_model(checkpoint.model, checkpoint.tokenizer, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["hidden_act"] = "gelu"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    assert main(["import", str(tmp_path / "hf"), str(tmp_path / "out")]) == 2
    assert "hidden_act='gelu' is not supported" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _rewrite(directory: Path, name: str, data: bytes) -> None:
    """Change a file and its manifest entry, as a buggy writer (not bit rot) would."""
    (directory / name).write_bytes(data)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(data).hexdigest()
    (directory / "manifest.json").write_text(json.dumps(manifest))
