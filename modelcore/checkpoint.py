"""Tandem's checkpoint format: one directory, written atomically.

    config.json            {"format": "tandem", "version": 1, "kind": "lm" | "scalar", "model": {...}}
    model.safetensors      the weights, our tensor names (a tied LM head is not stored twice)
    tokenizer.json         the tokenizer and its chat template (Hugging Face `tokenizers` format)
    tokenizer_config.json
    manifest.json          sha256 of every file above, checked when loading

The directory appears under its final name only once every file is complete, so a reader (a
Celery worker, the web app) never sees half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modelcore.config import ConfigError, ModelConfig
from modelcore.model import LlamaLM, ScalarModel, rope_tables
from modelcore.tokenizer import Tokenizer

FORMAT = "tandem"
VERSION = 1
KINDS: dict[str, type[LlamaLM] | type[ScalarModel]] = {"lm": LlamaLM, "scalar": ScalarModel}
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or does not fit its config."""


@dataclass
class Checkpoint:
    model: LlamaLM | ScalarModel
    tokenizer: Tokenizer


def save_checkpoint(
    model: LlamaLM | ScalarModel,
    tokenizer: Tokenizer,
    directory: str | Path,
    *,
    overwrite: bool = False,
) -> Path:
    """Write `model` and `tokenizer` to `directory`, atomically; returns the directory."""
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        _write_files(model, tokenizer, staging)
        # mkdtemp and safetensors create owner-only entries; workers under other users read them.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if directory.exists():
            retired = staging.with_name(staging.name + ".old")
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_directory(directory.parent)
    return directory


def load_checkpoint(
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    digest: str | None = None,
) -> Checkpoint:
    """Load a checkpoint written by `save_checkpoint`, verifying every file's hash and, given
    `digest`, that the checkpoint is the one of that `checkpoint_digest` (a directory rewritten
    since it was registered is refused, not served)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    _verify_manifest(directory)  # first: a damaged file is named, whatever the digest
    if digest is not None and checkpoint_digest(directory) != digest:
        raise CheckpointError(
            f"{directory}: not the files registered for this model version (the manifest's "
            "digest differs from the recorded one)"
        )
    meta = read_json(directory / "config.json")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{directory / 'config.json'}: not a Tandem checkpoint of version {VERSION} "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r}); import Hugging "
            "Face or GGUF models with `python -m modelcore import`"
        )
    try:
        config = ModelConfig.from_dict(meta["model"])
        cls = KINDS[meta["kind"]]
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{directory / 'config.json'}: bad model config: {error}") from error
    weights = directory / "model.safetensors"
    try:
        state_dict = load_file(weights, device=str(device or "cpu"))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{weights}: cannot read safetensors weights: {error}") from error
    stored_dtype = next(iter(state_dict.values())).dtype
    model = build_model(config, state_dict, dtype or stored_dtype, cls=cls)
    return Checkpoint(model=model, tokenizer=Tokenizer.load(directory))


def checkpoint_kind(directory: str | Path) -> str | None:
    """The kind ("lm" or "scalar") of the Tandem checkpoint in `directory`, or None where there
    is none (a Hugging Face directory, a file). Reads config.json only: loading verifies."""
    path = Path(directory) / "config.json"
    try:
        meta = read_json(path) if path.is_file() else {}
    except CheckpointError:  # not JSON: whatever it is, it is not ours
        return None
    return meta.get("kind") if meta.get("format") == FORMAT else None


def checkpoint_digest(directory: str | Path) -> str:
    """One sha256 that names the whole checkpoint: the hash of its manifest."""
    return _sha256(Path(directory) / MANIFEST)


def build_model(
    config: ModelConfig,
    state_dict: dict[str, torch.Tensor],
    dtype: torch.dtype,
    *,
    cls: type[LlamaLM] | type[ScalarModel] = LlamaLM,
) -> LlamaLM | ScalarModel:
    """A model with exactly these weights: any missing, extra or misshapen tensor is an error."""
    with torch.device("meta"):
        model = cls(config)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    tied = isinstance(model, LlamaLM) and config.tie_embeddings
    if tied:
        expected.pop("lm_head.weight")
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, shape in expected.items():
        if state_dict[name].shape != shape:
            raise CheckpointError(
                f"weights do not match the config: {name} has shape "
                f"{tuple(state_dict[name].shape)}, the config needs {tuple(shape)}"
            )
    model.load_state_dict(
        {n: t.to(dtype) for n, t in state_dict.items()}, strict=False, assign=True
    )
    if tied:
        model.lm_head.weight = model.decoder.embed.weight
    # Non-persistent buffers are still on the meta device after assign-loading.
    model.decoder.rope = rope_tables(config, device=model.decoder.embed.weight.device)
    return model


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _write_files(model: LlamaLM | ScalarModel, tokenizer: Tokenizer, directory: Path) -> None:
    kind = next(name for name, cls in KINDS.items() if isinstance(model, cls))
    meta = {"format": FORMAT, "version": VERSION, "kind": kind, "model": model.config.to_dict()}
    (directory / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    state_dict = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
    if kind == "lm" and model.config.tie_embeddings:
        del state_dict["lm_head.weight"]  # the same tensor as the embedding
    save_file(state_dict, directory / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save(directory)
    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    manifest = {"files": {name: _sha256(directory / name) for name in files}}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for name in [*files, MANIFEST]:
        with open(directory / name, "rb") as handle:
            os.fsync(handle.fileno())


def _verify_manifest(directory: Path) -> None:
    manifest = read_json(directory / MANIFEST).get("files")
    if not isinstance(manifest, dict) or not manifest:
        raise CheckpointError(f"{directory / MANIFEST}: lists no files")
    for name, digest in manifest.items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: file listed in the manifest is missing")
        if _sha256(path) != digest:
            raise CheckpointError(f"{path}: corrupt (sha256 differs from the manifest)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
