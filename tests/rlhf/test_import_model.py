"""manage.py import_model: Tandem checkpoints (what rlhf.train writes), Hugging Face
directories and GGUF files become model versions; the kind must fit the weights; a failed
import is recorded and may be retried under its name; every refusal is a CommandError."""

from __future__ import annotations

import shutil
from io import StringIO
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from modelcore.checkpoint import checkpoint_digest, load_checkpoint, save_checkpoint
from modelcore.hf_interop import save_hf_model
from modelcore.model import LlamaLM, ScalarModel
from rlhf.models import ModelVersion
from rlhf.services import BASE_MODEL_NAME, ensure_base_model
from rlhf.serving import load_version

CPU = torch.device("cpu")


def import_model(*args: str) -> str:
    out = StringIO()
    call_command("import_model", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def run_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A policy where a training stage leaves it: in a run directory outside the artifacts."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "runs" / "sft" / "model"))


@pytest.fixture
def reward_checkpoint(tiny_model_dir: Path, tmp_path: Path) -> Path:
    checkpoint = load_checkpoint(tiny_model_dir)
    reward_model = ScalarModel.from_policy(checkpoint.model)
    return save_checkpoint(reward_model, checkpoint.tokenizer, tmp_path / "runs" / "rm" / "model")


def test_a_tandem_checkpoint_is_copied_verified_and_registered(db, run_checkpoint, artifacts_root):
    output = import_model("sft-1", str(run_checkpoint))
    version = ModelVersion.objects.get(name="sft-1")
    assert (version.kind, version.status) == (ModelVersion.Kind.POLICY, "published")
    assert version.source == str(run_checkpoint)
    assert version.directory == artifacts_root / "models" / "sft-1"
    assert version.sha256 == checkpoint_digest(run_checkpoint)  # the same files
    model = load_version(version, device=CPU).model
    assert isinstance(model, LlamaLM)
    assert version.num_params == sum(p.numel() for p in model.parameters())
    assert f"as sft-1 (policy, published, {version.num_params / 1e6:.1f}M parameters" in output


def test_a_reward_model_registers_only_with_its_kind(db, reward_checkpoint):
    with pytest.raises(
        CommandError,
        match=r"reward model .*: import it with kind reward_helpfulness or reward_safety",
    ):
        import_model("rm-1", str(reward_checkpoint))
    with pytest.raises(CommandError, match=r"reward model .*, not a policy"):
        import_model("rm-1", str(reward_checkpoint), "--kind", "policy")
    assert not ModelVersion.objects.filter(name="rm-1").exists()  # refused before any work
    import_model("rm-1", str(reward_checkpoint), "--kind", "reward_safety", "--no-publish")
    version = ModelVersion.objects.get(name="rm-1")
    assert (version.kind, version.status) == (ModelVersion.Kind.REWARD_SAFETY, "ready")
    assert isinstance(load_version(version, device=CPU).model, ScalarModel)


def test_a_policy_is_not_a_reward_model(db, run_checkpoint):
    with pytest.raises(CommandError, match=r"is a policy .*, not a helpfulness reward model"):
        import_model("p-1", str(run_checkpoint), "--kind", "reward_helpfulness")
    assert not ModelVersion.objects.exists()


def test_a_failed_import_is_recorded_and_may_be_retried_under_its_name(
    db, run_checkpoint, tmp_path
):
    broken = Path(shutil.copytree(run_checkpoint, tmp_path / "broken"))
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CommandError, match=r"cannot import .*broken.*model\.safetensors"):
        import_model("retried", str(broken))
    failed = ModelVersion.objects.get(name="retried")
    assert failed.status == ModelVersion.Status.FAILED
    assert not ModelVersion.objects.available().exists()

    import_model("retried", str(run_checkpoint))
    version = ModelVersion.objects.get(name="retried")
    assert version.pk == failed.pk
    assert (version.status, version.source) == ("published", str(run_checkpoint))
    assert version.sha256 == checkpoint_digest(version.directory)


def test_a_broken_gguf_file_fails_visibly(db, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really")
    with pytest.raises(CommandError, match=r"cannot import .*broken\.gguf"):
        import_model("broken", str(broken))
    assert ModelVersion.objects.get(name="broken").status == ModelVersion.Status.FAILED


def test_an_existing_version_is_refused(db, run_checkpoint):
    import_model("taken", str(run_checkpoint), "--no-publish")
    with pytest.raises(CommandError, match=r"'taken' already exists \(ready\)"):
        import_model("taken", str(run_checkpoint))


def test_another_versions_files_are_never_overwritten(tiny_version, run_checkpoint):
    tiny_version.name = "renamed"  # its files stay in ARTIFACTS_ROOT/models/tiny
    tiny_version.save()
    with pytest.raises(CommandError, match="models/tiny holds the files of model version renamed"):
        import_model("tiny", str(run_checkpoint))


def test_a_checkpoint_already_in_place_is_registered_where_it_is(
    db, tiny_model_dir, artifacts_root
):
    place = Path(shutil.copytree(tiny_model_dir, artifacts_root / "models" / "in-place"))
    files = {path.name: path.stat().st_ino for path in place.iterdir()}
    import_model("in-place", str(place))
    assert {path.name: path.stat().st_ino for path in place.iterdir()} == files  # not rewritten
    version = ModelVersion.objects.get(name="in-place")
    assert version.directory == place and version.sha256 == checkpoint_digest(place)


def test_a_hugging_face_directory_is_converted(db, tiny_model_dir, tmp_path):
    checkpoint = load_checkpoint(tiny_model_dir)
    hf = save_hf_model(checkpoint.model, checkpoint.tokenizer, tmp_path / "hf")
    import_model("from-hf", str(hf))
    version = ModelVersion.objects.get(name="from-hf")
    model = load_version(version, device=CPU).model
    tokens = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(model(tokens), checkpoint.model(tokens))


@pytest.mark.parametrize(
    ("name", "source", "message"),
    [
        ("no spaces", "smollm2", "bad name 'no spaces': Enter a valid “slug”"),
        ("missing", "/no/such/model", "/no/such/model: no such file or directory"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_recorded(db, name, source, message):
    with pytest.raises(CommandError, match=message):
        import_model(name, source)
    assert not ModelVersion.objects.exists()


@pytest.mark.smollm2
def test_the_base_model_import_restarts_after_an_interrupted_one(db):
    interrupted = ModelVersion.objects.create(
        name=BASE_MODEL_NAME, artifact_path=f"models/{BASE_MODEL_NAME}"
    )
    version = ensure_base_model()
    assert (version.pk, version.status) == (interrupted.pk, ModelVersion.Status.PUBLISHED)
    assert ensure_base_model() == version  # available: nothing is imported again
