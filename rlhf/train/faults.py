"""Fault injection for tests: a process that kills itself, fails or pauses at a named point.

A kill-and-resume test that sleeps and then kills races the run it kills: on a busy machine the
run may not have reached the checkpoint yet, on a quiet one it may have finished. Instead the
test names the point and the process acts there, at the same place on every machine:

    TANDEM_TEST_KILL_AT="rm-helpfulness:3"   # SIGKILL after step 3 of the run in .../rm-helpfulness
    TANDEM_TEST_KILL_AT="*:2,policy:5"       # after step 2 of any run, or step 5 of policy/
    TANDEM_TEST_FAIL_AT="pipeline:export"    # raise InjectedFault there
    TANDEM_TEST_PAUSE_AT="ppo:1"             # with TANDEM_TEST_PAUSE_DIR=DIR: write
                                             # DIR/ppo-1.reached, wait for DIR/ppo-1.release

A SIGKILL is as abrupt as a kill from outside (no clean-up, no `finally`). A pause lets a test
interleave with the process at an exact point (request a cancel, then release it).

Points: the training stages report `<run directory name>:<step>` after each optimizer step,
once that step's resume checkpoint (if it writes one) is on disk; the loop's pipeline reports
`pipeline:<step name>` once a step is recorded as done. Unset, as in production, nothing
happens.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL, FAIL, PAUSE = "TANDEM_TEST_KILL_AT", "TANDEM_TEST_FAIL_AT", "TANDEM_TEST_PAUSE_AT"
PAUSE_DIR = "TANDEM_TEST_PAUSE_DIR"


class InjectedFault(RuntimeError):
    """The failure a test asked for at this point."""


def reached(point: str) -> None:
    """Act on `point` ("name:detail") if the environment names it."""
    if _named(KILL, point):
        os.kill(os.getpid(), signal.SIGKILL)
    if _named(FAIL, point):
        raise InjectedFault(f"failure injected at {point}")
    if _named(PAUSE, point):
        _pause(point)


def _named(variable: str, point: str) -> bool:
    wanted = os.environ.get(variable, "")
    name, _, detail = point.partition(":")
    for entry in filter(None, (e.strip() for e in wanted.split(","))):
        entry_name, _, entry_detail = entry.partition(":")
        if entry_name in ("*", name) and entry_detail == detail:
            return True
    return False


def _pause(point: str) -> None:
    folder = Path(os.environ[PAUSE_DIR])
    stem = point.replace(":", "-")
    (folder / f"{stem}.reached").touch()
    release = folder / f"{stem}.release"
    while not release.exists():
        time.sleep(0.05)
