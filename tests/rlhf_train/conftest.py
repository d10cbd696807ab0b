"""Session fixtures: a tiny random policy with a character tokenizer for the fast tests, and the
real SmolLM2-135M-Instruct in Tandem's format for the `smollm2` acceptance tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from train_fixtures import knowledge_rows, tiny_policy, tiny_tokenizer, write_rows

from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import save_checkpoint
from modelcore.gguf_import import import_gguf
from rlhf.train.reward import RewardConfig, train_reward_model


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """The tiny models run many small ops: on a loaded 2-core machine a second thread costs far
    more in synchronisation than it gains (a tiny run took 5x longer with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread_for_tiny_models(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("smollm2"):
        yield
    else:
        with one_thread():
            yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_tokenizer()
    policy = tiny_policy(tokenizer.vocab_size)
    return save_checkpoint(policy, tokenizer, tmp_path_factory.mktemp("tiny") / "policy")


@pytest.fixture(scope="session")
def tiny_comparisons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = knowledge_rows(pairs_per_question=1, heldout_share=0.2, seed=0)
    return write_rows(tmp_path_factory.mktemp("data") / "comparisons.jsonl", rows)


@pytest.fixture(scope="session")
def tiny_reward_model(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("tiny-rm")
    config = RewardConfig(
        data=tiny_comparisons, policy=tiny_checkpoint, out=out, batch_size=8, lr=1e-3
    )
    with one_thread():
        train_reward_model(config)
    return out / "model"


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tokenizer = import_gguf(smollm2_gguf_path())
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("smollm2") / "policy")
