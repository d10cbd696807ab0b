"""Fixtures for the Django apps: model versions on disk, an open batch, users in roles.

`tiny_model_dir` is a random 2-layer model with SmolLM2's real tokenizer and chat template: the
web code counts and checks prompts with the real format, and a worker samples from it in
milliseconds. `smollm2_model_dir` is the real base model, for tests where the words matter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import save_checkpoint
from modelcore.config import ModelConfig
from modelcore.gguf_import import import_gguf
from modelcore.model import LlamaLM, init_weights
from modelcore.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def artifacts_root() -> Path:
    from django.conf import settings

    return Path(settings.ARTIFACTS_ROOT)


@pytest.fixture(scope="session")
def tiny_model_dir(artifacts_root: Path) -> Path:
    tokenizer = Tokenizer.from_gguf(smollm2_gguf_path())
    config = dataclasses.replace(
        ModelConfig.from_name("smollm2-135m"),
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        intermediate_size=96,
        max_seq_len=1024,
    )
    torch.manual_seed(0)
    model = LlamaLM(config)
    init_weights(model)
    return save_checkpoint(model, tokenizer, artifacts_root / "models" / "tiny", overwrite=True)


@pytest.fixture(scope="session")
def smollm2_model_dir(artifacts_root: Path) -> Path:
    model, tokenizer = import_gguf(smollm2_gguf_path())
    return save_checkpoint(model, tokenizer, artifacts_root / "models" / "smollm2", overwrite=True)


def register(directory: Path, artifacts_root: Path, name: str):
    from rlhf.models import ModelVersion
    from rlhf.services import register_checkpoint

    version = ModelVersion.objects.create(
        name=name, artifact_path=str(directory.relative_to(artifacts_root))
    )
    return register_checkpoint(version, publish=True)


@pytest.fixture
def tiny_version(db, tiny_model_dir: Path, artifacts_root: Path):
    return register(tiny_model_dir, artifacts_root, "tiny")


@pytest.fixture
def batch(tiny_version):
    from annotation.models import Batch

    return Batch.objects.create(
        name="test-week", model_a=tiny_version, model_b=tiny_version, max_new_tokens=8
    )


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    def make(username: str, *roles: str, staff: bool = False):
        user = get_user_model().objects.create_user(
            username=username, password=f"{username}-password", is_staff=staff
        )
        user.groups.add(*Group.objects.filter(name__in=roles or ("annotator",)))
        return user

    return make
