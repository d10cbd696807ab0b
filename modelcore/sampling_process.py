"""A second process that decodes beside this one, for two models that share no weights.

On a CPU a decoding step of a small model does not get faster with more threads (SmolLM2 int8:
the same time at one and at two), so two models stepping in turn in one process take twice as
long as one. Each in its own process, on its own core, they take about 1.6 times one (they
share the memory's bandwidth: `benchmarks/two_versions.py`). Python threads cannot do it: the eager glue around every step holds the interpreter lock. A Celery
prefork child is a daemonic process, which `multiprocessing` refuses children, so the second
process is a plain subprocess running this module, and the two talk in pickles over its stdin
and stdout (a private pipe between two processes of one installation).

The protocol is lockstep, so the two never drift apart and a decoding closed half-way leaves
the pipe clean for the next:

    parent -> child   Request
    child  -> parent  ("step", tokens)     the row tokens of one step (`modelcore.sampling.decode`)
    parent -> child   True | False         go on (sent as soon as a step is read, so the child
                                           computes the next while the parent uses this one),
                                           or stop (the decoding was closed)
    child  -> parent  ("done", completions) | ("error", message)

The child keeps the last two models it prepared (a batch's two variants), as a worker does. It
exits when its stdin closes, so it dies with its parent, even one killed by SIGKILL.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from modelcore.checkpoint import load_checkpoint
from modelcore.sampling import Completion, Decoding, SamplingParams, decode
from modelcore.sampling_modes import prepare_for_sampling

_ROOT = Path(__file__).resolve().parent.parent  # the directory that holds the modelcore package


class SamplingProcessError(RuntimeError):
    """The second process failed a decoding (its message says why) or exited."""


@dataclass(frozen=True)
class Request:
    """One decoding: the checkpoint (and its `checkpoint_digest`), how to load and prepare it,
    and `modelcore.sampling.decode`'s arguments."""

    directory: str
    digest: str
    dtype: torch.dtype
    device: str
    mode: str  # a `modelcore.sampling_modes` mode
    prompts: list[list[int]]
    params: list[SamplingParams]
    pad_id: int


class SamplingProcess:
    """The second process, started at its first decoding and again after it exits; one
    decoding at a time. `threads`: its PyTorch threads."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._child: subprocess.Popen | None = None
        self._parent = os.getpid()  # a forked copy of this object starts a child of its own

    @property
    def pid(self) -> int | None:
        """The running child's pid (None before its first decoding or once it has exited)."""
        return self._child.pid if self._child is not None and self._child.poll() is None else None

    def decode(self, request: Request) -> Decoding:
        """The decoding of `request` in the second process: a step per `next()`, as
        `modelcore.sampling.decode` is in this one. The request is sent at the first `next()`,
        so a decoding closed before it never reaches the child."""
        return self._steps(self._running(), request)

    @contextlib.contextmanager
    def beside_this_one(self) -> Iterator[None]:
        """While the child decodes beside this process, this one leaves it the threads it
        took (set the child's `threads` to half of this process's)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads - self.threads))
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop the child: it exits once its stdin closes."""
        if self._child is not None:
            self._child.stdin.close()
            self._child.wait()
            self._child = None

    def _running(self) -> subprocess.Popen:
        if self._parent != os.getpid():
            self._child, self._parent = None, os.getpid()
        if self._child is None or self._child.poll() is not None:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "modelcore.sampling_process", str(self.threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=_ROOT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(_python_path())},
            )
        return self._child

    def _steps(self, child: subprocess.Popen, request: Request) -> Decoding:
        self._tell(child, request)
        in_flight = True  # the child owes a message
        try:
            while True:
                kind, value = self._receive(child)
                in_flight = False
                if kind == "done":
                    return value
                if kind == "error":
                    raise SamplingProcessError(value)
                self._tell(child, True)
                in_flight = True
                yield value
        finally:
            # Closed half-way: read the step in flight and stop the child's decoding. A child
            # that died meanwhile is started afresh by the next decoding.
            if in_flight:
                with contextlib.suppress(SamplingProcessError):
                    if self._receive(child)[0] == "step":
                        self._tell(child, False)

    def _tell(self, child: subprocess.Popen, message: object) -> None:
        try:
            _send(child.stdin, message)
        except BrokenPipeError as error:
            raise self._exited(child) from error

    def _receive(self, child: subprocess.Popen) -> tuple[str, Any]:
        try:
            return pickle.load(child.stdout)
        except (EOFError, pickle.UnpicklingError) as error:
            raise self._exited(child) from error

    def _exited(self, child: subprocess.Popen) -> SamplingProcessError:
        code = child.wait()
        self._child = None
        return SamplingProcessError(f"the sampling process exited (code {code}) mid-decoding")


def _python_path() -> list[str]:
    inherited = os.environ.get("PYTHONPATH", "")
    return [str(_ROOT), *(inherited.split(os.pathsep) if inherited else [])]


def _send(stream: BinaryIO, message: object) -> None:
    pickle.dump(message, stream, protocol=pickle.HIGHEST_PROTOCOL)
    stream.flush()


@functools.lru_cache(maxsize=2)
def _prepared(directory: str, digest: str, dtype: torch.dtype, device: str, mode: str) -> Any:
    model = load_checkpoint(directory, dtype=dtype, device=device, digest=digest).model.eval()
    return prepare_for_sampling(model, mode)


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    while True:
        try:
            request: Request = pickle.load(requests)
        except EOFError:  # the parent closed the pipe or died
            return
        try:
            decoding = decode(
                _prepared(
                    request.directory, request.digest, request.dtype, request.device, request.mode
                ),
                request.prompts,
                request.params,
                pad_id=request.pad_id,
            )
            _run(decoding, requests, replies)
        except EOFError:  # the parent died mid-decoding
            return
        except Exception as error:  # reported to the parent, which raises it
            _send(replies, ("error", f"{type(error).__name__}: {error}"))


def _run(decoding: Decoding, requests: BinaryIO, replies: BinaryIO) -> None:
    try:
        while True:
            try:
                tokens = next(decoding)
            except StopIteration as end:
                completions: Sequence[Completion] = end.value
                _send(replies, ("done", completions))
                return
            _send(replies, ("step", tokens))
            if not pickle.load(requests):
                return
    finally:
        decoding.close()


def main(argv: list[str]) -> None:
    torch.set_num_threads(int(argv[0]))
    # The protocol owns stdout: anything else printed goes to stderr, the worker's log.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main(sys.argv[1:])
