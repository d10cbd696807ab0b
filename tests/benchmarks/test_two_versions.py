"""benchmarks/two_versions.py end to end on the real SmolLM2 weights, short: every way of
sampling a pair is timed, and the shared trunk samples what the two versions sample in turn.
A check that the script runs and compares like with like, not a timing test."""

from __future__ import annotations

import pytest

from tests.benchmarks.benchmark_runs import run_benchmark

RUNS = ("one_response", "one_version_pair", "in_turn", "shared_trunk", "second_process")


@pytest.mark.smollm2
def test_the_pair_on_a_shared_trunk_is_the_pair_in_turn() -> None:
    result = run_benchmark("two_versions.py", "--new-tokens=8", "--repeats=1", timeout=600)
    assert result["benchmark"] == "two_versions" and result["new_tokens"] == 8
    # SmolLM2 has 30 blocks; the child's top two moved, its LM head (the embedding) did not.
    assert result["shared_blocks"] == 28 and result["shared_head"] is True
    assert set(result["seconds"]) == set(RUNS)
    assert all(result["seconds"][run]["best"] > 0 for run in RUNS)
    assert {f"{run}_vs_one" for run in RUNS[1:]} <= set(result)
    assert result["same_tokens"] is True
