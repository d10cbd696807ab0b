"""Model versions put to work: a version's checkpoint loaded on the serving device
(settings.SERVING_DEVICE), its chat format, and sampling replies. The generate worker samples
the annotators' pairs through it (both sides together), and the loop loads the versions it
starts from through it.

The chat format and the sampling model are cached per process, keyed by the version's digest,
so a worker loads each model once and a republished version under the same name is never
served stale. Nothing here touches CUDA before a model is loaded, so importing it in the parent
of a prefork worker is safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from django.conf import settings

from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.checkpoint import Checkpoint, load_checkpoint, read_json
from modelcore.compiled_decode import CompiledDecoding
from modelcore.model import LlamaLM
from modelcore.sampling import Completion, SamplingParams, decode, generate_together
from modelcore.sampling_modes import prepare_for_sampling
from modelcore.sampling_process import Request, SamplingProcess
from modelcore.shared_trunk import ModelDigests, SharedTrunk, common_parts, model_digests
from modelcore.tokenizer import StreamDecoder, Tokenizer
from rlhf.models import ModelVersion

# A model samples through KV caches it holds as state, so two threads must not sample with the
# same model at once (a threaded worker pool, or tasks run inline by a threaded web server).
_sampling = threading.Lock()


def serving_device() -> torch.device:
    """The device models are served on: settings.SERVING_DEVICE, where "auto" is the GPU when
    this process has one, else the CPU."""
    if settings.SERVING_DEVICE == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(settings.SERVING_DEVICE)


def load_version(version: ModelVersion, *, device: torch.device | None = None) -> Checkpoint:
    """A fresh copy of `version`'s model (policy or reward model) and tokenizer on `device`
    (default: the serving device), in bfloat16 on a GPU and float32 elsewhere."""
    return _load(version.directory, version.sha256, device or serving_device())


def _load(directory: Path, sha256: str, device: torch.device) -> Checkpoint:
    return load_checkpoint(directory, dtype=_serving_dtype(device), device=device, digest=sha256)


def _serving_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU, float32 on a CPU (where int8 or oneDNN packing starts from it)."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


@dataclass(frozen=True)
class ChatFormat:
    tokenizer: Tokenizer
    template: ChatTemplate
    max_seq_len: int

    def encode_prompt(self, messages: list[Message]) -> list[int]:
        """The ids the model samples from; ValueError names what is wrong with the dialogue."""
        return encode_dialogue(
            self.tokenizer, self.template, messages, add_generation_prompt=True
        ).ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))


def chat_format(version: ModelVersion) -> ChatFormat:
    """The version's tokenizer and chat template, without loading its weights (the web process
    counts and checks prompts with it)."""
    return _chat_format(str(version.directory), version.sha256)


@functools.lru_cache(maxsize=8)
def _chat_format(directory: str, sha256: str) -> ChatFormat:
    tokenizer = Tokenizer.load(directory)
    config = read_json(Path(directory) / "config.json")
    return ChatFormat(
        tokenizer=tokenizer,
        template=ChatTemplate.for_tokenizer(tokenizer),
        max_seq_len=int(config["model"]["max_seq_len"]),
    )


# Receives a reply's text so far and its number of tokens (the stop token not counted).
OnText = Callable[[str, int], None]


def sample_reply(
    version: ModelVersion,
    messages: list[Message],
    params: SamplingParams,
    on_text: Callable[[str], None],
) -> tuple[str, Completion]:
    """Sample the assistant's reply to `messages` with the version's policy on the serving
    device; `on_text` receives the text so far as it grows. Returns the final text and the
    completion."""
    [reply] = sample_replies(messages, [(version, params)], [lambda text, _count: on_text(text)])
    return reply


def sample_replies(
    messages: list[Message],
    sides: Sequence[tuple[ModelVersion, SamplingParams]],
    on_text: Sequence[OnText],
) -> list[tuple[str, Completion]]:
    """Sample several replies to `messages` together (a comparison's two responses), each side
    with its own version and parameters; `on_text[i]` receives side i's text and token count
    as they grow. Returns each side's final text and completion.

    Sides of one version are the rows of one batched pass. Versions that share their bottom
    blocks (a version the loop trained in its top blocks beside its parent) run those blocks
    once for every row (`modelcore.shared_trunk`), so a pair costs little more than one reply.
    Two versions that share no block sample in parallel, the second in the second process
    (`modelcore.sampling_process`, settings.SERVING_SECOND_PROCESS), or else a token each in
    turn here (`modelcore.sampling.generate_together`). Every way, both sides stream from the
    start.
    """
    if len(on_text) != len(sides):
        raise ValueError(f"{len(sides)} sides but {len(on_text)} on_text callbacks")
    keys = [(str(version.directory), version.sha256) for version, _ in sides]
    rows_of: dict[tuple[str, str], list[int]] = {}
    # In the versions' order, not the sides': the same version of a batch always goes to the
    # same process, which keeps it warm.
    for index, key in sorted(enumerate(keys), key=lambda item: item[1]):
        rows_of.setdefault(key, []).append(index)
    chats = {key: _chat_format(*key) for key in rows_of}
    prompts = {key: chat.encode_prompt(messages) for key, chat in chats.items()}
    params = [
        dataclasses.replace(
            side, stop_ids=tuple(stop_ids(chats[key].tokenizer, chats[key].template))
        )
        for key, (_, side) in zip(keys, sides, strict=True)
    ]
    streams = [
        _TextStream(chats[key], callback) for key, callback in zip(keys, on_text, strict=True)
    ]
    served = {key: _sampling_policy(*key) for key in rows_of}
    trunk = _shared_trunk(list(served.values()), [len(rows) for rows in rows_of.values()])
    if trunk is None:
        groups = list(rows_of.values())
        policies = [served[key].policy for key in rows_of]
    else:
        groups = [[index for rows in rows_of.values() for index in rows]]
        policies = [trunk]
    with _sampling:
        # A second version that shares no block with the first samples in the second process,
        # on its own cores (any further one would step in turn here).
        beside = _second_process() if len(groups) > 1 else None
        decodings = []
        for position, (policy, group) in enumerate(zip(policies, groups, strict=True)):
            key = keys[group[0]]
            rows = [prompts[keys[index]] for index in group], [params[index] for index in group]
            pad_id = chats[key].tokenizer.pad_id or 0
            if beside is not None and position == 1:
                decodings.append(beside.decode(_request(key, *rows, pad_id=pad_id)))
            else:
                decodings.append(decode(policy, *rows, pad_id=pad_id))
        with contextlib.nullcontext() if beside is None else beside.beside_this_one():
            results = generate_together(
                decodings,
                on_tokens=[
                    functools.partial(_push_rows, [streams[index] for index in group])
                    for group in groups
                ],
            )
    completions = {
        index: completion
        for group, completed in zip(groups, results, strict=True)
        for index, completion in zip(group, completed, strict=True)
    }
    return [(stream.finish(), completions[index]) for index, stream in enumerate(streams)]


class _TextStream:
    """One side's text as its tokens arrive."""

    def __init__(self, chat: ChatFormat, on_text: OnText) -> None:
        self._decoder = StreamDecoder(chat.tokenizer, skip_special_tokens=True)
        self._stops = set(stop_ids(chat.tokenizer, chat.template))
        self._on_text = on_text
        self._pieces: list[str] = []
        self._count = 0

    def push(self, token: int) -> None:
        self._count += token not in self._stops
        self._pieces.append(_storable(self._decoder.push(token)))
        self._on_text("".join(self._pieces), self._count)

    def finish(self) -> str:
        self._pieces.append(_storable(self._decoder.flush()))
        return "".join(self._pieces).strip()


def _storable(piece: str) -> str:
    # A byte-level vocabulary has a token for the NUL byte, which a model may sample, and
    # PostgreSQL refuses NUL in text: it is shown and stored as the replacement character. (The
    # decoder replaces invalid UTF-8, so no lone surrogate comes out of it.)
    return piece.replace("\x00", "\ufffd")


def _push_rows(streams: list[_TextStream], tokens: list[int | None]) -> None:
    for stream, token in zip(streams, tokens, strict=True):
        if token is not None:
            stream.push(token)


@dataclass(frozen=True)
class _Served:
    """A version's model prepared to sample, and the digests of its parts as loaded (a
    prepared model's weights can no longer be compared)."""

    policy: LlamaLM | CompiledDecoding
    digests: ModelDigests


@functools.lru_cache(maxsize=2)  # the batch's two variants, kept warm between tasks
def _sampling_policy(directory: str, sha256: str) -> _Served:
    # Prepared once per process in settings.SERVING_SAMPLING_MODE. The GPU's compiled mode
    # compiles here, as the model loads, before its first sampled token: the first comparison a
    # fresh worker samples waits for it, later ones replay the compiled step.
    model = _load(Path(directory), sha256, serving_device()).model.eval()
    digests = model_digests(model)
    return _Served(prepare_for_sampling(model, settings.SERVING_SAMPLING_MODE), digests)


def _shared_trunk(served: list[_Served], rows: list[int]) -> SharedTrunk | None:
    """One decoding for several versions through the bottom blocks they share; None for a
    single version, for versions that share no block, and for compiled ones (a compiled step
    is one whole model's)."""
    if len(served) < 2 or not all(isinstance(s.policy, LlamaLM) for s in served):
        return None
    common = common_parts(*(s.digests for s in served))
    if common.blocks == 0:
        return None
    return SharedTrunk([s.policy for s in served], common, rows)  # type: ignore[misc]


def _request(
    key: tuple[str, str], prompts: list[list[int]], params: list[SamplingParams], *, pad_id: int
) -> Request:
    device = serving_device()
    return Request(
        *key,
        dtype=_serving_dtype(device),
        device=str(device),
        mode=settings.SERVING_SAMPLING_MODE,
        prompts=prompts,
        params=params,
        pad_id=pad_id,
    )


def _second_process() -> SamplingProcess | None:
    """The process a second version samples in (settings.SERVING_SECOND_PROCESS); None when
    off. "auto" is on for a CPU with two cores or more: a GPU steps the two versions in turn."""
    wanted = settings.SERVING_SECOND_PROCESS
    if wanted == "auto":
        cores = len(os.sched_getaffinity(0))
        wanted = "on" if serving_device().type == "cpu" and cores > 1 else "off"
    return _beside() if wanted == "on" else None


@functools.cache
def _beside() -> SamplingProcess:
    # Half of this process's PyTorch threads, which it leaves to the child while both sample.
    return SamplingProcess(threads=max(1, torch.get_num_threads() // 2))
