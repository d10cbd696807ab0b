"""benchmarks/annotate_load.py works end to end: a tiny load against gunicorn + PostgreSQL.

A check that the script runs in CI (set-up, load, database checks, clean-up), not a timing test:
the latencies of a shared CI machine say nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[2]


def test_a_small_load_loses_and_doubles_nothing():
    name = f"tandem_bench_ci_{os.getpid()}"  # never the database of a run beside this one
    admin_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "annotate_load.py"),
            "--concurrency=4",
            "--duration=5",
            "--think=0.1",
            "--double-share=0.3",
            f"--database-url={admin_url}",
            f"--database-name={name}",
            f"--redis-url={os.environ['REDIS_URL']}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["errors"], result["lost"], result["duplicated"]) == (0, 0, 0), result
    assert result["labels"] > 0 and result["double_submits"] > 0, result
    assert result["shared"] == 0 and result["served_twice"] == 0, result
    for key in ("concurrency", "p50_ms", "p99_ms", "fetch_p50_ms", "fetch_p99_ms", "think_s"):
        assert key in result
    # Cleaned up: the benchmark's database is gone.
    with psycopg.connect(admin_url, autocommit=True) as connection:
        left = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchall()
    assert not left
