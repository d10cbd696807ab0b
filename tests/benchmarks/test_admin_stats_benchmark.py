"""benchmarks/admin_stats.py works end to end on PostgreSQL: a small batch at two sizes.

A check that the script runs in CI (set-up, seeding, every page, clean-up) and that no page's
query count grows with the labels, not a timing test: the timings of a shared CI machine say
little (the script's own budget is checked at 10k and 100k labels).
"""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.benchmarks.benchmark_runs import run_benchmark

pytestmark = pytest.mark.services


def test_every_admin_page_at_two_sizes_with_constant_queries():
    name = f"tandem_bench_admin_ci_{os.getpid()}"  # never the database of a run beside this one
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    result = run_benchmark(
        "admin_stats.py",
        "--labels=300,1500",
        "--annotators=12",
        "--overlap=3",
        "--repeats=1",
        f"--database-url={admin_url}",
        f"--database-name={name}",
        timeout=300,
    )
    assert result["labels"] == [300, 1500]
    pages = result["pages"]
    assert {"batch statistics", "annotation.label list", "annotation.review list"} <= set(pages)
    for page, by_size in pages.items():
        assert set(by_size) == {"300", "1500"}, page
        assert by_size["300"]["queries"] == by_size["1500"]["queries"], page
    assert result["queries_constant"] is True
    assert result["slowest"]["seconds"] == max(
        figures["seconds"] for by_size in pages.values() for figures in by_size.values()
    )
    with psycopg.connect(admin_url, autocommit=True) as connection:
        left = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchall()
    assert not left
