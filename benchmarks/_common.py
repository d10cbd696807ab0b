"""What the two benchmark scripts share: arguments, timing, and the JSON line they print.

The machine a benchmark runs on may be shared, so every figure comes from repeated runs
interleaved between the contenders (a burst of load then slows both, not one) and is reported
as the best run, the one least disturbed by other work; the median is reported beside it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed runs per contender, interleaved (after a warm-up run)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile our model (the compile time is reported, not counted)",
    )
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave glibc malloc returning freed memory to the kernel (see keep_freed_memory)",
    )


def keep_freed_memory() -> str:
    """Make glibc malloc keep freed memory for reuse instead of returning it to the kernel.

    By default every tensor over 32 MiB is a fresh mmap, so each training step faults in its
    activations, logits and gradients page by page again (~0.3-0.9 M page faults a step here,
    a quarter of the step time on this VM, varying with the host). That is a cost of the
    allocator, the same for both contenders and no part of either model, and it is the noisiest
    part of the measurement; PyTorch's own CPU launcher (torch.backends.xeon.run_cpu) swaps in
    jemalloc or tcmalloc for the same reason. Returns what was done, for the JSON.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc
        return "system default"
    m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
    if mallopt(m_mmap_max, 0) != 1 or mallopt(m_trim_threshold, 2**31 - 1) != 1:
        return "system default"
    return "glibc, freed memory kept (M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)"


def log(message: str) -> None:
    """Progress goes to stderr: stdout's last line is the JSON result."""
    print(message, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall seconds of `fn()` (with queued device work finished) and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def interleaved(
    runs: dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each run, `repeats` times, in turns: A B C, then C B A, and so on; and each
    run's last result.

    Reversing the order each round keeps any contender from always following the same one
    (whose memory traffic or thermal state could otherwise bias it).
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    names = list(runs)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            elapsed, results[name] = timed(runs[name], device)
            seconds[name].append(elapsed)
            log(f"  {name}: {elapsed:.2f} s")
    return seconds, results


def rate(work: float, seconds: list[float]) -> dict[str, float]:
    """Work per second of the best run (the reported figure) and of the median run."""
    return {"best": work / min(seconds), "median": work / statistics.median(seconds)}


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device.type,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
