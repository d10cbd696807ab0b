"""DDP and FSDP under torchrun on CPU (gloo): two processes give the losses and the model of one
process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from modelcore.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(
    strategy: str, tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    def reward(*launcher: str, out: Path) -> list[dict[str, float]]:
        command = [
            *launcher, "-m", "rlhf.train", "reward",
            "--data", str(tiny_comparisons), "--policy", str(tiny_checkpoint), "--out", str(out),
            "--batch-size", "8", "--micro-batch-size", "2", "--lr", "1e-3", "--train-layers", "2",
            "--strategy", strategy,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-12000:]
        return json.loads((out / "metrics.json").read_text())["history"]

    one = reward(sys.executable, out=tmp_path / "one")
    two = reward(
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        out=tmp_path / "two",
    )  # fmt: skip
    assert len(one) == len(two) > 3
    for key in ("loss", "accuracy"):
        assert_close(torch.tensor([h[key] for h in two]), torch.tensor([h[key] for h in one]))
    one_model = load_checkpoint(tmp_path / "one" / "model").model.state_dict()
    for name, tensor in load_checkpoint(tmp_path / "two" / "model").model.state_dict().items():
        assert_close(tensor, one_model[name], rtol=1e-4, atol=1e-5, msg=name)
