"""Running a benchmark script as its user would, for the smoke tests of benchmarks/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(script: str, *options: str, timeout: float) -> dict:
    """benchmarks/`script` run with `options`; it must succeed, and its last line of stdout
    (the one JSON object every benchmark prints) comes back."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])
