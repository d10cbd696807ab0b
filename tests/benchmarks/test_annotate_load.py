"""benchmarks/annotate_load.py works end to end: a tiny load against gunicorn + PostgreSQL.

A check that the script runs in CI (set-up, load, database checks, clean-up), not a timing test:
the latencies of a shared CI machine say nothing.
"""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.benchmarks.benchmark_runs import run_benchmark

pytestmark = pytest.mark.services


def test_a_small_load_loses_and_doubles_nothing():
    name = f"tandem_bench_ci_{os.getpid()}"  # never the database of a run beside this one
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    result = run_benchmark(
        "annotate_load.py",
        "--concurrency=4",
        "--duration=5",
        "--think=0.1",
        "--double-share=0.3",
        f"--database-url={admin_url}",
        f"--database-name={name}",
        f"--redis-url={os.environ['REDIS_URL']}",
        timeout=300,
    )
    assert (result["errors"], result["lost"], result["duplicated"]) == (0, 0, 0), result
    assert result["labels"] > 0 and result["double_submits"] > 0, result
    assert result["shared"] == 0 and result["served_twice"] == 0, result
    for key in ("concurrency", "p50_ms", "p99_ms", "fetch_p50_ms", "fetch_p99_ms", "think_s"):
        assert key in result
    # Cleaned up: the benchmark's database is gone.
    with psycopg.connect(admin_url, autocommit=True) as connection:
        left = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchall()
    assert not left
