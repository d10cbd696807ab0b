"""rlhf.serving: the serving device from settings, a version's checkpoint loaded and checked
against its recorded digest, its chat format, a comparison's pair sampled together, and
sampling shared safely between threads."""

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
from modelcore.tiny import save_tiny_model
from rlhf.serving import (
    _sampling_policy,
    _TextStream,
    chat_format,
    load_version,
    sample_replies,
    sample_reply,
    serving_device,
)
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


@pytest.fixture
def other_version(artifacts_root, db):
    directory = save_tiny_model(artifacts_root / "models" / "tiny-other", seed=1, overwrite=True)
    return register(directory, artifacts_root, "tiny-other")


@pytest.mark.parametrize("two_versions", [False, True], ids=["one version", "two versions"])
def test_a_pair_sampled_together_equals_each_reply_alone(
    settings, tiny_version, other_version, two_versions
):
    """One version at two temperatures is one batch of two rows; two versions sample side by
    side (in two processes or in turn: the next test). Either way each side is what it would be
    alone, and streams as it grows."""
    settings.SERVING_DEVICE = "cpu"
    messages = [Message("user", "Name a colour.")]
    sides = [
        (tiny_version, SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9, seed=4)),
        (
            other_version if two_versions else tiny_version,
            SamplingParams(max_new_tokens=9, temperature=1.0, seed=5),
        ),
    ]
    streamed: list[list[tuple[str, int]]] = [[], []]
    pair = sample_replies(
        messages,
        sides,
        [lambda text, count, side=side: streamed[side].append((text, count)) for side in (0, 1)],
    )
    for (version, params), (text, completion), seen in zip(sides, pair, streamed, strict=True):
        alone_text, alone = sample_reply(version, messages, params, lambda _: None)
        assert (text, completion.tokens) == (alone_text, alone.tokens)
        assert completion.finish_reason == "length"  # random weights: no end-of-turn token
        assert [count for _, count in seen] == list(range(1, params.max_new_tokens + 1))
        assert text.startswith(seen[-1][0].strip())
    assert pair[0][0] != pair[1][0]


@pytest.mark.parametrize("second_process", ["on", "off"])
def test_versions_sharing_no_block_sample_in_two_processes(
    settings, tiny_version, other_version, second_process
):
    """With SERVING_SECOND_PROCESS on, one of two versions that share nothing samples in the
    second process: its copy here never runs. Off, the two step in turn here. The replies are
    the same either way."""
    settings.SERVING_DEVICE = "cpu"
    settings.SERVING_SECOND_PROCESS = second_process
    messages = [Message("user", "Name a colour.")]
    sides = [
        (other_version, SamplingParams(max_new_tokens=10, temperature=0.7, top_p=0.9, seed=4)),
        (tiny_version, SamplingParams(max_new_tokens=10, temperature=1.0, seed=5)),
    ]
    keys = [(str(version.directory), version.sha256) for version, _ in sides]
    calls = [0, 0]
    hooks = [
        _sampling_policy(*key).policy.register_forward_hook(
            lambda *_, side=side: calls.__setitem__(side, calls[side] + 1)
        )
        for side, key in enumerate(keys)
    ]
    try:
        pair = sample_replies(messages, sides, [lambda *_: None] * 2)
    finally:
        for hook in hooks:
            hook.remove()
    # The version of the greater key samples beside this process: the same one, whatever side
    # it is shown on, so each process keeps its own warm.
    beside = keys.index(max(keys))
    assert calls[beside] == (0 if second_process == "on" else 10)
    assert calls[1 - beside] == 10  # a prefill and nine steps
    for (version, params), (text, completion) in zip(sides, pair, strict=True):
        alone_text, alone = sample_reply(version, messages, params, lambda _: None)
        assert (text, completion.tokens) == (alone_text, alone.tokens)


@pytest.fixture
def top_trained_version(tiny_model_dir, artifacts_root, db):
    """The tiny model with its top block changed, as the loop's cheap training mode leaves a
    new version beside its parent."""
    checkpoint = load_checkpoint(tiny_model_dir)
    with torch.no_grad():
        for weight in checkpoint.model.decoder.layers[-1].parameters():
            weight.mul_(1.5)
    directory = artifacts_root / "models" / "tiny-top-trained"
    save_checkpoint(checkpoint.model, checkpoint.tokenizer, directory, overwrite=True)
    return register(directory, artifacts_root, "tiny-top-trained")


def test_versions_sharing_their_bottom_blocks_sample_through_them_once(
    settings, tiny_version, top_trained_version
):
    settings.SERVING_DEVICE = "cpu"
    messages = [Message("user", "Name a colour.")]
    sides = [
        (tiny_version, SamplingParams(max_new_tokens=10, temperature=0.7, top_p=0.9, seed=4)),
        (top_trained_version, SamplingParams(max_new_tokens=10, temperature=0.7, seed=4)),
    ]
    parent, child = (_sampling_policy(str(v.directory), v.sha256).policy for v, _ in sides)
    calls = {"parent bottom": 0, "child bottom": 0, "child top": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1

        return hook

    hooks = [
        parent.decoder.layers[0].register_forward_hook(count("parent bottom")),
        child.decoder.layers[0].register_forward_hook(count("child bottom")),
        child.decoder.layers[-1].register_forward_hook(count("child top")),
    ]
    try:
        pair = sample_replies(messages, sides, [lambda *_: None] * 2)
    finally:
        for hook in hooks:
            hook.remove()
    # One prefill and nine steps: the parent's bottom block ran them for both rows, the
    # child's own top block for its row, and the child's copy of the bottom block never ran.
    assert calls == {"parent bottom": 10, "child bottom": 0, "child top": 10}
    for (version, params), (text, completion) in zip(sides, pair, strict=True):
        alone_text, alone = sample_reply(version, messages, params, lambda _: None)
        assert (text, completion.tokens) == (alone_text, alone.tokens)
    assert pair[0][1].tokens != pair[1][1].tokens  # same seed, different top block


def test_a_sampled_nul_byte_is_stored_as_the_replacement_character(tiny_version):
    # The tiny model once sampled the NUL byte's token for a test's prompt, and PostgreSQL
    # refused the text: the worker failed the comparison.
    chat = chat_format(tiny_version)
    ids = chat.tokenizer.encode("a\x00b")
    seen = []
    stream = _TextStream(chat, lambda text, count: seen.append(text))
    for token in ids:
        stream.push(token)
    assert stream.finish() == "a\ufffdb"
    assert all("\x00" not in text for text in seen)
