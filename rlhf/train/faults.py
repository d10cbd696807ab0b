"""Fault injection for tests: a process that kills itself at a named point.

A kill-and-resume test that sleeps and then kills races the run it kills: on a busy machine the
run may not have reached the checkpoint yet, on a quiet one it may have finished. Instead the
test names the point and the process SIGKILLs itself there, which is as abrupt as a kill from
outside (no clean-up, no `finally`) and lands at the same place on every machine:

    TANDEM_TEST_KILL_AT="rm-helpfulness:3"     # after step 3 of the run in .../rm-helpfulness
    TANDEM_TEST_KILL_AT="*:2,policy:5"         # after step 2 of any run, or step 5 of policy/

The training stages report `<run directory name>:<step>` after each optimizer step, once that
step's resume checkpoint (if it writes one) is on disk. Unset, as in production, nothing
happens.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "TANDEM_TEST_KILL_AT"


def reached(point: str) -> None:
    """SIGKILL this process if `point` ("name:detail") is one the environment names."""
    wanted = os.environ.get(VARIABLE, "")
    if not wanted:
        return
    name, _, detail = point.partition(":")
    for entry in wanted.split(","):
        entry_name, _, entry_detail = entry.strip().partition(":")
        if entry_name in ("*", name) and entry_detail == detail:
            os.kill(os.getpid(), signal.SIGKILL)
