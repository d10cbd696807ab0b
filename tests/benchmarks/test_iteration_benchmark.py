"""benchmarks/iteration.py works end to end on the tiny random model: an iteration's every step
timed, and the policy stage's time split. A check that the script runs, not a timing test."""

from __future__ import annotations

import json

import pytest

from rlhf.models import Iteration
from tests.benchmarks.benchmark_runs import run_benchmark

# Short responses, few samples: the tiny model never stops by itself.
QUICK = {
    "rejection_sampling": {"samples": 2, "max_new_tokens": 8},
    "ppo": {"steps": 2, "max_new_tokens": 8},
    "evaluate": {"max_new_tokens": 8},
}


@pytest.mark.parametrize("algorithm", ["rejection_sampling", "ppo"])
def test_one_iteration_is_timed_step_by_step(algorithm):
    result = run_benchmark(
        "iteration.py",
        "--tiny",
        "--rows=16",
        f"--algorithm={algorithm}",
        f"--hyperparameters={json.dumps(QUICK)}",
        timeout=300,
    )
    assert list(result["step_seconds"]) == Iteration.step_names(algorithm)
    assert all(seconds >= 0 for seconds in result["step_seconds"].values())
    assert result["total_s"] == pytest.approx(sum(result["step_seconds"].values()), abs=0.5)
    assert result["workload"]["rows"] == 16 and result["workload"]["model"] == "tiny"
    [split] = result["policy"].values()
    assert 0 < split["generation_share"] <= 1
    assert result["published"] == "iteration-1-policy"
