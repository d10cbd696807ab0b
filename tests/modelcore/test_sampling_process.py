"""modelcore.sampling_process: a decoding in the second process gives what it gives in this one,
and the lockstep protocol survives a decoding closed half-way, an error in the child, the
child's death and the parent's."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from modelcore.checkpoint import checkpoint_digest, load_checkpoint
from modelcore.sampling import SamplingParams, decode, generate, generate_together
from modelcore.sampling_process import Request, SamplingProcess, SamplingProcessError
from modelcore.tiny import save_tiny_model

PROMPTS = [[5, 6, 7, 8], [9, 10]]
PARAMS = [
    SamplingParams(max_new_tokens=12, temperature=0.7, top_p=0.9, seed=3),
    SamplingParams(max_new_tokens=6, temperature=0.0),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("sampling-process") / "tiny", seed=2)


@pytest.fixture(scope="module")
def here(tiny):
    return load_checkpoint(tiny, dtype=torch.float32).model.eval()


@pytest.fixture
def process():
    process = SamplingProcess(threads=1)
    yield process
    process.close()


def request(directory: Path, params=PARAMS, *, digest: str | None = None) -> Request:
    return Request(
        str(directory),
        digest or checkpoint_digest(directory),
        dtype=torch.float32,
        device="cpu",
        mode="reference",
        prompts=PROMPTS,
        params=list(params),
        pad_id=0,
    )


def run(decoding) -> tuple[list, list]:
    steps = []
    [completions] = generate_together([decoding], on_tokens=[steps.append])
    return steps, completions


def tokens(decoding) -> tuple[list, list]:
    """What a decoding streamed and how each row ended (logprobs aside: one thread there and
    this process's threads here may order a sum differently)."""
    steps, completions = run(decoding)
    return steps, [(c.tokens, c.finish_reason) for c in completions]


def test_the_second_process_samples_what_this_one_does(tiny, here, process):
    # The greedy row's first token made its stop token: it stops beside a row that runs on.
    [greedy] = generate(here, PROMPTS[1:], PARAMS[1:], pad_id=0)
    params = [
        PARAMS[0],
        SamplingParams(max_new_tokens=6, temperature=0.0, stop_ids=greedy.tokens[:1]),
    ]
    there_steps, there = run(process.decode(request(tiny, params)))
    here_steps, local = run(decode(here, PROMPTS, params, pad_id=0))
    assert there_steps == here_steps
    assert [(c.tokens, c.finish_reason) for c in there] == [
        (c.tokens, c.finish_reason) for c in local
    ]
    assert [c.finish_reason for c in there] == ["length", "stop"]
    for theirs, ours in zip(there, local, strict=True):
        assert theirs.logprobs == pytest.approx(ours.logprobs, abs=1e-5)


def test_a_decoding_closed_half_way_leaves_the_child_ready_for_the_next(tiny, here, process):
    expected = tokens(decode(here, PROMPTS, PARAMS, pad_id=0))
    unstarted = process.decode(request(tiny))
    unstarted.close()  # never sent
    halfway = process.decode(request(tiny))
    next(halfway), next(halfway)
    halfway.close()  # the child was computing the third step: it is read and the child stopped
    pid = process.pid
    assert tokens(process.decode(request(tiny))) == expected
    assert process.pid == pid


def test_an_error_in_the_child_is_raised_here_and_the_child_goes_on(tiny, here, process):
    with pytest.raises(SamplingProcessError, match=r"CheckpointError: .*not the files registered"):
        run(process.decode(request(tiny, digest="0" * 64)))
    with pytest.raises(SamplingProcessError, match="ValueError: 2 prompts but 1 sampling"):
        run(process.decode(request(tiny, PARAMS[:1])))
    pid = process.pid
    assert tokens(process.decode(request(tiny))) == tokens(decode(here, PROMPTS, PARAMS, pad_id=0))
    assert process.pid == pid


def test_a_child_that_dies_mid_decoding_fails_it_and_a_new_child_takes_the_next(
    tiny, here, process
):
    decoding = process.decode(request(tiny))
    next(decoding)
    os.kill(process.pid, signal.SIGKILL)
    # Lockstep: the child is at most one step ahead, so the second read at the latest meets
    # the closed pipe.
    with pytest.raises(SamplingProcessError, match=r"exited \(code -9\) mid-decoding"):
        next(decoding), next(decoding)
    assert process.pid is None
    assert tokens(process.decode(request(tiny))) == tokens(decode(here, PROMPTS, PARAMS, pad_id=0))


def decode_in_a_daemon(directory: str, results) -> None:
    process = SamplingProcess(threads=1)
    try:
        results.put(tokens(process.decode(request(Path(directory)))))
    except Exception as error:  # reported to the test rather than lost with the daemon
        results.put(repr(error))
    finally:
        process.close()


def test_a_daemonic_process_starts_the_second_process(tiny, here):
    """A Celery prefork child is daemonic, and a daemonic process may not start
    `multiprocessing` children: the second process is a plain subprocess, which it may."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    daemon = context.Process(target=decode_in_a_daemon, args=(str(tiny), results), daemon=True)
    daemon.start()
    try:
        outcome = results.get(timeout=300)  # a deadline for the answer, not a timed outcome
    finally:
        daemon.join(timeout=60)
    assert outcome == tokens(decode(here, PROMPTS, PARAMS, pad_id=0))


PARENT = """
import sys
from pathlib import Path
import torch
from modelcore.checkpoint import checkpoint_digest
from modelcore.sampling import SamplingParams
from modelcore.sampling_process import Request, SamplingProcess

directory = Path(sys.argv[1])
process = SamplingProcess(threads=1)
params = [SamplingParams(max_new_tokens=50, seed=1)]
decoding = process.decode(
    Request(str(directory), checkpoint_digest(directory), dtype=torch.float32, device="cpu",
            mode="reference", prompts=[[5, 6]], params=params, pad_id=0)
)
next(decoding)
print(process.pid, flush=True)
sys.stdin.read()  # held here, mid-decoding, until killed
"""


def test_the_child_exits_when_its_parent_is_killed(tiny):
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PARENT), str(tiny)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait()
    # The child inherited the parent's stderr: the pipe ends once both have exited, so reading
    # it to its end waits for the child's exit itself (the timeout only bounds a child that
    # never exits, which the assertion then reports).
    stderr = parent.stderr.fileno()
    while select.select([stderr], [], [], 120)[0] and os.read(stderr, 1 << 16):
        pass
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running, not a zombie (a child reparented to an init that does not reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
