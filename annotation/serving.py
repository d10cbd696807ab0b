"""What the annotation app needs of a model version: its chat format (the web process counts and
checks prompts with it) and the model itself (the generate worker samples with it).

Both are cached per process, keyed by the version's digest, so a worker loads each model once
and a republished version under the same name is never served stale.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from modelcore.chat import ChatTemplate, Message, encode_dialogue, stop_ids
from modelcore.checkpoint import load_checkpoint, read_json
from modelcore.cpu_sampling import prepare_for_cpu_sampling
from modelcore.model import LlamaLM
from modelcore.sampling import Completion, SamplingParams, generate
from modelcore.tokenizer import StreamDecoder, Tokenizer
from rlhf.models import ModelVersion

# A model samples through KV caches it holds as state, so two threads must not sample with the
# same model at once (a threaded worker pool, or tasks run inline by a threaded web server).
_sampling = threading.Lock()


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


def sample_reply(
    version: ModelVersion,
    messages: list[Message],
    params: SamplingParams,
    on_text: Callable[[str], None],
) -> tuple[str, Completion]:
    """Sample the assistant's reply to `messages`; `on_text` receives the text so far as it
    grows. Returns the final text and the completion."""
    model = _policy(str(version.directory), version.sha256)
    chat = chat_format(version)
    prompt = chat.encode_prompt(messages)
    params = dataclasses.replace(params, stop_ids=tuple(stop_ids(chat.tokenizer, chat.template)))
    stream = StreamDecoder(chat.tokenizer, skip_special_tokens=True)
    pieces: list[str] = []

    def collect(tokens: list[int | None]) -> None:
        if tokens[0] is not None:
            pieces.append(stream.push(tokens[0]))
            on_text("".join(pieces))

    with _sampling:
        [completion] = generate(
            model, [prompt], params, pad_id=chat.tokenizer.pad_id or 0, on_tokens=collect
        )
    pieces.append(stream.flush())
    return "".join(pieces).strip(), completion


@functools.lru_cache(maxsize=2)
def _policy(directory: str, sha256: str) -> LlamaLM:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_checkpoint(directory, dtype=dtype, device=device).model.eval()
    if device == "cpu":
        prepare_for_cpu_sampling(model)
    return model
