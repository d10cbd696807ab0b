"""benchmarks/vs_trl.py end to end on the real SmolLM2 weights, tiny: both sides of each stage
train, report throughput and memory, and start from the same loss. A check that the script runs
and that the comparison is of the same objective, not a timing test."""

from __future__ import annotations

import math

import pytest

from tests.benchmarks.benchmark_runs import run_benchmark

pytest.importorskip("trl", reason="TRL is a benchmark-only dependency: pip install -e '.[bench]'")

STAGES = ("reward", "dpo", "sft")


@pytest.mark.smollm2
def test_each_stage_starts_from_the_same_loss_as_trl() -> None:
    # About 3 minutes on a quiet 2-core machine (8 processes, each loading the model); 20 on
    # one shared with other test suites.
    result = run_benchmark(
        "vs_trl.py",
        "--rows=4",
        "--sentences=1",
        "--steps=2",
        "--micro-batch=2",
        "--sft-micro-batch=1",
        "--pack-len=128",
        timeout=1800,
    )
    assert result["benchmark"] == "vs_trl" and result["rows"] == 4
    for stage in STAGES:
        figures = result[stage]
        # Every row is in each step: 4 comparisons are 4 pairs, or 4 demonstrations.
        assert figures["examples_per_step"] == 4
        assert figures["tokens_per_step"] > 4 * 40  # the system prompt alone is ~30 tokens
        for side in ("ours", "trl"):
            assert figures[f"{side}_examples_s"] > 0 and figures[f"{side}_tokens_s"] > 0
            assert figures[f"{side}_peak_memory_mib"] > 500  # 135M float32 weights alone
        assert figures["trl_trains_on_our_tokens"]
        ours, theirs = figures["first_loss_ours"], figures["first_loss_trl"]
        assert math.isfinite(ours) and ours > 0.01  # not a trivial loss (a zero reward head)
        assert abs(ours - theirs) == pytest.approx(figures["first_loss_abs_diff"])
        assert figures["first_loss_abs_diff"] <= 1e-4, (stage, ours, theirs)
        assert figures["first_loss_agree"]
    # DPO with two pairs per micro-batch: TRL pools its NLL, so the losses are compared with one.
    assert result["dpo"]["first_loss_micro_batch"] == 1
    assert "timed_first_loss_trl" in result["dpo"]
    assert result["first_losses_agree"]
