"""rlhf.serving: the serving device from settings, a version's checkpoint loaded and checked
against its recorded digest, its chat format, and sampling shared safely between threads."""

from __future__ import annotations

import shutil
import threading
import time

import pytest
import torch

from modelcore.chat import Message
from modelcore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from modelcore.model import LlamaLM
from modelcore.sampling import SamplingParams
from rlhf.serving import chat_format, load_version, sample_reply, serving_device
from tests.django_fixtures import register
from tests.tandem.test_settings import run_django


@pytest.mark.parametrize(
    ("setting", "has_cuda", "device"),
    [("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cuda", False, "cuda")],
)
def test_the_serving_device_comes_from_settings(settings, monkeypatch, setting, has_cuda, device):
    settings.SERVING_DEVICE = setting
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    assert serving_device() == torch.device(device)


def test_an_unknown_serving_device_stops_start_up(tmp_path):
    result = run_django("", tmp_path, DEBUG="1", SERVING_DEVICE="gpu")
    assert result.returncode != 0
    assert "SERVING_DEVICE='gpu': expected one of auto, cpu, cuda" in result.stderr


def test_a_version_loads_on_the_serving_device_in_its_dtype(settings, tiny_version):
    settings.SERVING_DEVICE = "cpu"
    checkpoint = load_version(tiny_version)
    assert isinstance(checkpoint.model, LlamaLM)
    assert {p.device.type for p in checkpoint.model.parameters()} == {"cpu"}
    assert {p.dtype for p in checkpoint.model.parameters()} == {torch.float32}
    assert chat_format(tiny_version).max_seq_len == checkpoint.model.config.max_seq_len == 1024


def test_a_directory_rewritten_after_registration_is_refused(
    tiny_model_dir, artifacts_root, db, settings
):
    settings.SERVING_DEVICE = "cpu"
    directory = artifacts_root / "models" / "rewritten"
    shutil.copytree(tiny_model_dir, directory, dirs_exist_ok=True)
    version = register(directory, artifacts_root, "rewritten")
    checkpoint = load_checkpoint(directory)
    with torch.no_grad():
        checkpoint.model.decoder.embed.weight.mul_(2)
    save_checkpoint(checkpoint.model, checkpoint.tokenizer, directory, overwrite=True)
    with pytest.raises(CheckpointError, match="not the files registered"):
        load_version(version)


def test_threads_sampling_with_one_model_take_turns(tiny_version):
    """A threaded pool (or tasks run inline by a threaded server) shares the cached model and
    its KV caches; sampling must not interleave."""
    params = SamplingParams(max_new_tokens=24, temperature=1.0, seed=3)
    results, errors = [], []

    def sample():
        try:
            # Streaming writes to the database wait on I/O: the other threads run meanwhile.
            _, completion = sample_reply(
                tiny_version, [Message("user", "Hi")], params, lambda _: time.sleep(0.002)
            )
            results.append(completion.tokens)
        except Exception as error:
            errors.append(error)

    sample()  # loads the model into the process's cache, so the threads share it
    threads = [threading.Thread(target=sample) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(results) == 4 and all(r == results[0] for r in results)  # same seed, same tokens
