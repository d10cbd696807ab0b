"""benchmarks/serve_pair.py works end to end, small: a prompt through the annotator's API to
both responses from the real generate worker, on the embedded default and on PostgreSQL +
Redis, beside the model core and transformers on the same responses.

A check that the script runs (set-up, the worker, the three contenders, clean-up) and that
its figures are well formed, not the targets: 8 tokens on a shared CI machine say nothing
about speed (the README lists the full run's figures).
"""

from __future__ import annotations

import math
import os

import psycopg
import pytest

from modelcore.cpu_sampling import int8_supported
from tests.benchmarks.benchmark_runs import run_benchmark

NEW_TOKENS = 8


def run_small(*options: str) -> dict:
    return run_benchmark(
        "serve_pair.py",
        f"--new-tokens={NEW_TOKENS}",
        "--repeats=1",
        *options,
        timeout=1200,
    )


def redis_of_its_own(url: str) -> str:
    """Another database of the same Redis server: the suite's own worker consumes the `generate`
    queue of the configured one, and would take the benchmark's messages (and find none of its
    comparisons in the test database)."""
    base, _, db = url.rpartition("/")
    return f"{base}/{(int(db or 0) + 1) % 16}"


def check_figures(figures: dict) -> None:
    for ratio in ("overhead_over_core", "speedup_over_transformers"):
        assert math.isfinite(figures[ratio]) and figures[ratio] > 0, figures
    for key in (
        "first_token_s",
        "core_first_token_s",
        "both_complete_s",
        "core_s",
        "transformers_s",
    ):
        assert 0 < figures[key]["best"] <= figures[key]["median"], (key, figures)
    for key in ("tok_s", "core_tok_s", "transformers_tok_s"):
        assert figures[key]["best"] >= figures[key]["median"] > 0, (key, figures)
    assert 0 < figures["cold_first_token_s"] <= figures["cold_both_complete_s"]
    assert figures["first_token_s"]["median"] <= figures["both_complete_s"]["median"]
    [tokens] = figures["tokens"]
    assert len(tokens) == 2 and all(0 < n <= NEW_TOKENS for n in tokens), tokens
    # The worker and the model core sampled the same text from the same seeds and mode.
    assert figures["same_text_as_core"] is True


def test_the_embedded_default_serves_a_pair():
    result = run_small("--configurations", "embedded")
    assert (result["benchmark"], result["new_tokens"], result["mode"]) == (
        "serve_pair",
        NEW_TOKENS,
        "int8" if int8_supported() else "reference",
    )
    assert set(result["configurations"]) == {"embedded"}
    check_figures(result["configurations"]["embedded"])


@pytest.mark.services
def test_postgresql_and_redis_serve_a_pair():
    name = f"tandem_bench_serve_pair_ci_{os.getpid()}"  # never the database of a run beside this
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    result = run_small(
        "--configurations",
        "redis",
        f"--database-url={admin_url}",
        f"--database-name={name}",
        f"--redis-url={redis_of_its_own(os.environ['REDIS_URL'])}",
    )
    check_figures(result["configurations"]["redis"])
    with psycopg.connect(admin_url, autocommit=True) as connection:
        left = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchall()
    assert not left
