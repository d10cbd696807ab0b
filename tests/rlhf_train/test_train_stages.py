"""The stages on a tiny random model: resume after a stop or a kill, cheap modes, progress,
the command line, and each stage's outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.testing import assert_close
from train_fixtures import tiny_policy, tiny_tokenizer

from modelcore.checkpoint import load_checkpoint
from modelcore.model import ScalarModel
from rlhf.train import (
    DPOConfig,
    EvalConfig,
    PPOConfig,
    RejectionConfig,
    RewardConfig,
    SFTConfig,
    evaluate_policy,
    faults,
    run_dpo,
    run_ppo,
    run_rejection_sampling,
    run_sft,
    train_reward_model,
)
from rlhf.train.cli import main
from rlhf.train.data import read_demonstrations
from rlhf.train.trainable import full_state_dict, plain_copy, select_trainable

REPO = Path(__file__).resolve().parents[2]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "model").model.state_dict()


def assert_same_run(a: Path, b: Path) -> None:
    for name, tensor in weights(a).items():
        assert_close(tensor, weights(b)[name], rtol=0, atol=1e-6, msg=name)
    losses = [json.loads((d / "metrics.json").read_text())["history"] for d in (a, b)]
    assert_close(
        torch.tensor([h["loss"] for h in losses[0]]), torch.tensor([h["loss"] for h in losses[1]])
    )


def assert_tensorboard_matches_history(run_dir: Path) -> None:
    """The TensorBoard log holds every step of metrics.json's history once (as float32)."""
    history = json.loads((run_dir / "metrics.json").read_text())["history"]
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    names = {name for record in history for name in record} - {"step"}
    assert set(events.Tags()["scalars"]) == names
    for name in names:
        logged = [(e.step, e.value) for e in events.Scalars(name)]
        expected = [(h["step"], h[name]) for h in history if name in h]
        assert [step for step, _ in logged] == [step for step, _ in expected], name
        assert_close(
            torch.tensor([value for _, value in logged]),
            torch.tensor([value for _, value in expected]),
            rtol=0,
            atol=0,
            msg=name,
        )


class StopAt:
    """A progress callback that records the calls and asks to stop at one step."""

    def __init__(self, step: int | None) -> None:
        self.step = step
        self.calls: list[tuple[int, int, float, dict[str, float]]] = []

    def __call__(self, step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        self.calls.append((step, total, loss, metrics))
        return step == self.step


def test_reward_model_resumes_after_a_stop_exactly(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    def config(out: Path) -> RewardConfig:
        return RewardConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            out=out,
            batch_size=8,
            micro_batch_size=4,
            lr=1e-3,
            epochs=2,
            checkpoint_every=2,
        )

    whole = StopAt(None)
    train_reward_model(config(tmp_path / "whole"), whole)
    steps = whole.calls[-1][1]
    assert [c[0] for c in whole.calls] == list(range(1, steps + 1))
    assert {"accuracy", "lr"} <= set(whole.calls[0][3])

    stopper = StopAt(3)
    stopped = train_reward_model(config(tmp_path / "resumed"), stopper)
    assert stopped["stopped"] and len(stopped["history"]) == 3
    assert (tmp_path / "resumed" / "resume.pt").exists()
    assert not (tmp_path / "resumed" / "model").exists()
    train_reward_model(config(tmp_path / "resumed"))
    assert not (tmp_path / "resumed" / "resume.pt").exists()
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    assert_tensorboard_matches_history(tmp_path / "resumed")


def test_a_run_resumes_only_under_a_config_with_the_same_result(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    def config(**changes: Any) -> RewardConfig:
        values = {"batch_size": 8, "micro_batch_size": 4, "lr": 1e-3, **changes}
        return RewardConfig(data=tiny_comparisons, policy=tiny_checkpoint, out=tmp_path, **values)

    train_reward_model(config(), StopAt(2))
    with pytest.raises(ValueError, match=r"another config \(seed 0 -> 1; lr 0.001 -> 0.01\)"):
        train_reward_model(config(lr=1e-2, seed=1))
    assert (tmp_path / "resume.pt").exists()
    # Micro-batches change how a step is computed, not what it computes.
    resumed = train_reward_model(config(micro_batch_size=2))
    assert not resumed.get("stopped") and resumed["steps"] > 2


def test_sft_killed_mid_run_resumes_to_the_same_model(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    demonstrations = tmp_path / "demonstrations.jsonl"
    rows = [json.loads(line) for line in tiny_comparisons.read_text().splitlines()][:16]
    demonstrations.write_text(
        "".join(json.dumps({"prompt": r["prompt"], "response": r["chosen"]}) + "\n" for r in rows)
    )

    def command(out: Path) -> list[str]:
        return [
            sys.executable, "-m", "rlhf.train", "sft",
            "--data", str(demonstrations), "--policy", str(tiny_checkpoint), "--out", str(out),
            "--batch-size", "2", "--micro-batch-size", "1", "--max-seq-len", "96",
            "--lr", "1e-3", "--epochs", "2", "--checkpoint-every", "2",
        ]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = subprocess.run(
        command(tmp_path / "whole"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout.splitlines()[-1])["steps"] > 4

    # SIGKILL after step 3: step 2's resume.pt is on disk, step 3's work is lost with the
    # process, and no clean-up runs. The process kills itself there (rlhf.train.faults), so the
    # kill lands at the same step on a busy machine and a quiet one.
    out = tmp_path / "killed"
    killed = subprocess.run(
        command(out),
        cwd=REPO,
        env={**env, faults.KILL: f"{out.name}:3"},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "resume.pt").exists() and not (out / "model").exists()
    assert torch.load(out / "resume.pt", weights_only=True)["step"] == 2
    resumed = subprocess.run(command(out), cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "whole", out)
    # The killed run had logged step 3, which the resumed one did again: once in the log.
    assert_tensorboard_matches_history(out)


def test_dpo_with_lora_resumes_and_reuses_reference_logprobs(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    def config(out: Path) -> DPOConfig:
        return DPOConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            out=out,
            batch_size=8,
            micro_batch_size=4,
            lr=1e-2,
            lora_rank=4,
            checkpoint_every=2,
        )

    metrics = run_dpo(config(tmp_path / "whole"))
    assert metrics["trainable"] < metrics["parameters"] / 4
    heldout = metrics["heldout"]
    assert heldout["logprob_margin_after"] != heldout["logprob_margin_before"]
    run_dpo(config(tmp_path / "resumed"), StopAt(2))
    reference = (tmp_path / "resumed" / "reference_logprobs.pt").stat().st_mtime_ns
    run_dpo(config(tmp_path / "resumed"))
    assert (tmp_path / "resumed" / "reference_logprobs.pt").stat().st_mtime_ns == reference
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    # The written model is a plain one: the adapters are merged into its weights.
    assert not any("lora" in name for name in weights(tmp_path / "whole"))


def test_lora_merged_copy_computes_what_the_adapted_model_does() -> None:
    tokenizer = tiny_tokenizer()
    model = ScalarModel.from_policy(tiny_policy(tokenizer.vocab_size))
    select_trainable(model, train_layers=2, lora_rank=4, lora_alpha=8.0)
    for name, param in model.named_parameters():
        if "lora_b" in name:
            torch.nn.init.normal_(param)  # as if trained: B starts at zero
    tokens = torch.randint(tokenizer.vocab_size, (2, 12))
    merged = plain_copy(model, full_state_dict(model))
    assert_close(merged(tokens), model(tokens), rtol=1e-5, atol=1e-5)
    assert not any("lora" in name for name in merged.state_dict())


def test_top_layers_mode_trains_only_the_top_blocks(
    tiny_checkpoint: Path, tiny_comparisons: Path, tmp_path: Path
) -> None:
    metrics = train_reward_model(
        RewardConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            out=tmp_path,
            batch_size=8,
            lr=1e-2,
            train_layers=1,
        )
    )
    before = load_checkpoint(tiny_checkpoint).model.state_dict()
    after = weights(tmp_path)
    changed = {n for n in after if n in before and not torch.equal(after[n], before[n])}
    top = len([n for n in before if n.endswith("attention_norm.weight")]) - 1
    assert changed and all(
        n.startswith(f"decoder.layers.{top}.") or n == "decoder.norm.weight" for n in changed
    )
    assert not torch.equal(after["score.weight"], torch.zeros_like(after["score.weight"]))
    assert metrics["trainable"] < metrics["parameters"]


def test_sft_from_the_command_line_prints_metrics_json(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "demonstrations.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Say {i}", "response": f"{i}"}) + "\n" for i in range(12))
    )
    status = main(
        [
            "sft", "--data", str(data), "--policy", str(tiny_checkpoint),
            "--out", str(tmp_path / "run"), "--batch-size", "1", "--max-seq-len", "64",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["examples"] == 12 and summary["steps"] == 2 * summary["packed_rows"]
    assert "sft: 100%" in captured.err  # the tqdm bar
    loaded = load_checkpoint(tmp_path / "run" / "model")
    assert loaded.model.config == load_checkpoint(tiny_checkpoint).model.config


def test_rejection_sampling_keeps_the_best_of_k_and_of_earlier_iterations(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in tiny_comparisons.read_text().splitlines()]
    prompt = next(r for r in rows if not r["heldout"])
    previous = tmp_path / "previous.jsonl"
    previous.write_text(
        json.dumps({"prompt": "An earlier prompt?", "response": "An earlier answer."}) + "\n"
    )
    metrics = run_rejection_sampling(
        RejectionConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            helpfulness_rm=tiny_reward_model,
            out=tmp_path / "run",
            samples=3,
            temperature=1.0,
            max_new_tokens=6,
            previous_best=[previous],
            batch_size=4,
            max_seq_len=128,
            epochs=1,
        )
    )
    curve = metrics["reward_vs_k"]
    assert [point["k"] for point in curve] == [1, 2, 3]
    assert curve[0]["max"] == curve[0]["median"] and curve[-1]["max"] >= curve[0]["max"]
    best = read_demonstrations(tmp_path / "run" / "best.jsonl")
    assert len(best) == metrics["prompts"] + 1  # every sampled prompt, plus the earlier one
    assert any(d.prompt == "An earlier prompt?" for d in best)
    assert any(d.prompt == prompt["prompt"] for d in best)
    samples = torch.load(tmp_path / "run" / "samples.pt", weights_only=True)
    written = (tmp_path / "run" / "best.jsonl").read_text().splitlines()
    for rewards, row in zip(samples["rewards"], map(json.loads, written), strict=False):
        assert row["reward"] == max(rewards)  # sampled prompts come first, in order
    assert (tmp_path / "run" / "model").is_dir()


def test_ppo_runs_with_early_stopping_and_reports_its_time_split(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    metrics = run_ppo(
        PPOConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            helpfulness_rm=tiny_reward_model,
            out=tmp_path,
            steps=6,
            batch_size=8,
            minibatch_size=4,
            micro_batch_size=2,
            max_new_tokens=6,
            lr=1e-3,
            value_lr=1e-3,
            eval_every=1,
            patience=2,
        )
    )
    history = metrics["history"]
    assert 1 <= metrics["steps_run"] == len(history) <= 6
    assert all(h["generation_s"] > 0 and h["training_s"] > 0 for h in history)
    assert 0 < metrics["generation_share"] < 1
    assert all("kl" in h and "reward" in h and "heldout_reward" in h for h in history)
    assert metrics["heldout_reward_best"] >= metrics["heldout_reward_initial"]
    curve = [metrics["heldout_reward_initial"], *(h["heldout_reward"] for h in history)]
    if len(history) < 6:  # stopped early: the last `patience` evaluations did not improve
        assert max(curve[-2:]) <= max(curve[:-2])
    assert (tmp_path / "model").is_dir()


def test_ppo_refuses_fsdp_before_loading_anything(tiny_comparisons: Path, tmp_path: Path) -> None:
    config = PPOConfig(
        data=tiny_comparisons,
        policy=tmp_path / "missing-policy",
        helpfulness_rm=tmp_path / "missing-rm",
        out=tmp_path / "run",
        strategy="fsdp",
    )
    with pytest.raises(ValueError, match="PPO trains with --strategy ddp"):
        run_ppo(config)
    assert not (tmp_path / "run").exists()


def test_evaluating_a_policy_against_itself_is_all_ties(
    tiny_checkpoint: Path, tiny_comparisons: Path, tiny_reward_model: Path, tmp_path: Path
) -> None:
    metrics = evaluate_policy(
        EvalConfig(
            data=tiny_comparisons,
            policy=tiny_checkpoint,
            baseline=tiny_checkpoint,
            helpfulness_rm=tiny_reward_model,
            out=tmp_path,
            max_new_tokens=6,
        )
    )
    assert metrics["win_rate"] == 0.5 and metrics["ties"] == metrics["prompts"]
    assert metrics["kl_to_baseline"] == 0.0
    shown = {s["shown_first"] for s in metrics["samples"]}
    assert shown == {"policy", "baseline"}  # the order is randomised
    assert json.loads((tmp_path / "eval.json").read_text())["win_rate"] == 0.5


def test_sft_requires_a_policy_checkpoint(tiny_reward_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    with pytest.raises(ValueError, match="expected a policy"):
        run_sft(SFTConfig(data=data, policy=tiny_reward_model, out=tmp_path / "run"))
