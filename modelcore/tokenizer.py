"""The model's tokenizer: HF `tokenizers` (the Rust library) behind a small, typed surface.

Two ways in: `Tokenizer.from_gguf` rebuilds the byte-level BPE a GGUF file describes in its
metadata (the base model ships as GGUF), and `Tokenizer.load` reads the `tokenizer.json` +
`tokenizer_config.json` pair of a Tandem checkpoint or of a Hugging Face model directory.
`save` writes that same pair, in a form `transformers.AutoTokenizer.from_pretrained` loads.

    tokenizer = Tokenizer.from_gguf(smollm2_gguf_path())
    ids = tokenizer.encode("<|im_start|>user\nHi<|im_end|>\n")   # specials parsed, see `encode`
    tokenizer.decode(ids)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gguf
import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
# transformers >= 4.50 writes the chat template to its own file instead of into the config.
CHAT_TEMPLATE_FILE = "chat_template.jinja"

# llama.cpp's token types (`tokenizer.ggml.token_type`): 3 marks control tokens such as
# <|im_start|>, which must be matched whole in the text rather than cut into byte pieces.
_GGUF_CONTROL = 3

_SPECIAL_NAMES = ("bos", "eos", "pad", "unk")


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or describes a tokenizer we cannot build."""


def _byte_level_pre_tokenizer(pre_type: str, source: str) -> pre_tokenizers.PreTokenizer:
    """Splits text the way the vocabulary's merges were learned (GGUF `tokenizer.ggml.pre`).

    "gpt2" is GPT-2's regex. "smollm" (also StarCoder's) first isolates every numeric character,
    then applies GPT-2's regex: that is llama.cpp's definition and the `tokenizer.json` SmolLM2
    ships with. transformers' GGUF loader knows no "smollm" and uses plain GPT-2's regex; the
    results agree on ASCII digits (the vocabulary has no multi-digit token) but not on numerals
    like "²" or "٣", which the model saw isolated in training.
    """
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre_type == "gpt2":
        return byte_level
    if pre_type == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    raise TokenizerError(
        f"{source}: pre-tokenizer {pre_type!r} is not supported (supported: gpt2, smollm)"
    )


class Tokenizer:
    """Text ↔ token ids, the special tokens' ids, and the model's chat template (Jinja source).

    `encode` never adds BOS or EOS: chat templates write them as text where the model wants them.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        chat_template: str | None = None,
        source: str = "tokenizer",
    ) -> None:
        self._backend = backend
        self.chat_template = chat_template
        self._tokens = {"bos": bos_token, "eos": eos_token, "pad": pad_token, "unk": unk_token}
        self._ids: dict[str, int | None] = {}
        for name, token in self._tokens.items():
            token_id = None if token is None else backend.token_to_id(token)
            if token is not None and token_id is None:
                raise TokenizerError(f"{source}: {name} token {token!r} is not in the vocabulary")
            self._ids[name] = token_id
        special = {
            token_id: added.content
            for token_id, added in backend.get_added_tokens_decoder().items()
            if added.special
        }
        self.special_ids = frozenset(special)
        self.special_tokens = tuple(special.values())

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, source: str | os.PathLike[str] | gguf.GGUFReader) -> Tokenizer:
        """Build the byte-level BPE tokenizer a GGUF file describes (llama.cpp's "gpt2" model).

        Takes a path or an open `GGUFReader`, so an importer that also reads the weights parses
        the file once.
        """
        if isinstance(source, gguf.GGUFReader):
            reader, name = source, str(getattr(source.data, "filename", "GGUF file"))
        else:
            name = str(source)
            if not Path(name).is_file():
                raise TokenizerError(f"{name}: no such file")
            try:
                reader = gguf.GGUFReader(name)
            except (OSError, ValueError, IndexError) as exc:
                raise TokenizerError(f"{name}: not a readable GGUF file ({exc})") from exc

        def optional(key: str, default: Any = None) -> Any:
            return reader.fields[key].contents() if key in reader.fields else default

        def required(key: str) -> Any:
            if key not in reader.fields:
                raise TokenizerError(f"{name}: GGUF metadata has no {key!r}")
            return reader.fields[key].contents()

        model = required("tokenizer.ggml.model")
        if model != "gpt2":
            raise TokenizerError(
                f"{name}: tokenizer model is {model!r}; only byte-level BPE ('gpt2') is supported"
            )
        tokens: list[str] = required("tokenizer.ggml.tokens")
        merges = [tuple(merge.split(" ")) for merge in required("tokenizer.ggml.merges")]
        # Byte-level tokens spell a space as "Ġ", so a merge rule splits on its one real space.
        if any(len(merge) != 2 for merge in merges):
            raise TokenizerError(f"{name}: a merge rule is not two tokens separated by a space")
        # Files converted before llama.cpp recorded the pre-tokenizer have none: GPT-2's is meant.
        pre_tokenizer = _byte_level_pre_tokenizer(optional("tokenizer.ggml.pre", "gpt2"), name)

        backend = tokenizers.Tokenizer(
            models.BPE(vocab={token: i for i, token in enumerate(tokens)}, merges=merges)
        )
        backend.pre_tokenizer = pre_tokenizer
        backend.decoder = decoders.ByteLevel()
        token_types = optional("tokenizer.ggml.token_type", [])
        backend.add_special_tokens(
            [
                AddedToken(token, special=True, normalized=False)
                for token, token_type in zip(tokens, token_types, strict=False)
                if token_type == _GGUF_CONTROL
            ]
        )

        def special(key: str) -> str | None:
            token_id = optional(f"tokenizer.ggml.{key}_token_id")
            if token_id is not None and not 0 <= token_id < len(tokens):
                raise TokenizerError(f"{name}: {key} token id {token_id} is outside the vocabulary")
            return None if token_id is None else tokens[token_id]

        return cls(
            backend,
            bos_token=special("bos"),
            eos_token=special("eos"),
            pad_token=special("padding"),
            unk_token=special("unknown"),
            chat_template=optional("tokenizer.chat_template"),
            source=name,
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Tokenizer:
        """Read `tokenizer.json` and `tokenizer_config.json` from a Tandem checkpoint or a Hugging
        Face model directory (including one written by transformers' `save_pretrained`)."""
        directory = Path(directory)
        tokenizer_path = directory / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise TokenizerError(f"{tokenizer_path}: no such file")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust side raises a bare Exception for any parse error
            raise TokenizerError(f"{tokenizer_path}: not a valid tokenizer file ({exc})") from exc
        config = _read_config(directory / CONFIG_FILE)
        return cls(
            backend,
            **{
                f"{name}_token": _token_content(config.get(f"{name}_token"))
                for name in _SPECIAL_NAMES
            },
            chat_template=_chat_template(config, directory),
            source=str(directory),
        )

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write `tokenizer.json` and `tokenizer_config.json` into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._backend.save(str(directory / TOKENIZER_FILE))
        config: dict[str, Any] = {
            # The generic class: it takes every component from tokenizer.json and adds nothing.
            "tokenizer_class": "PreTrainedTokenizerFast",
            # transformers would otherwise edit the spaces around punctuation when decoding.
            "clean_up_tokenization_spaces": False,
        }
        config.update(
            {f"{name}_token": token for name, token in self._tokens.items() if token is not None}
        )
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        (directory / CONFIG_FILE).write_text(
            json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    # --- use ----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, with nothing added around it (no BOS/EOS).

        Special-token strings in `text` (such as "<|im_end|>") become their single special id:
        chat formatting writes turns as text and relies on this. Never pass untrusted text here
        expecting it to stay literal.
        """
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """`encode`, plus the (start, end) character span of `text` each token comes from."""
        encoding = self._backend.encode(text, add_special_tokens=False)
        return encoding.ids, encoding.offsets

    def decode(self, ids: list[int], *, skip_special_tokens: bool = False) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(token_id)

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def bos_id(self) -> int | None:
        return self._ids["bos"]

    @property
    def eos_id(self) -> int | None:
        return self._ids["eos"]

    @property
    def pad_id(self) -> int | None:
        return self._ids["pad"]

    @property
    def unk_id(self) -> int | None:
        return self._ids["unk"]

    @property
    def bos_token(self) -> str | None:
        return self._tokens["bos"]

    @property
    def eos_token(self) -> str | None:
        return self._tokens["eos"]


class StreamDecoder:
    """Turns token ids arriving one at a time into text, emitting only complete characters.

    Byte-level BPE can split one UTF-8 character over several tokens; until the last piece
    arrives the decoded tail is U+FFFD, so that text is held back. Each step decodes the new ids
    together with the previously emitted ones as context and returns only the difference: some
    decoders (sentencepiece-style) drop the leading space of a decode, which in context is real.

        stream = StreamDecoder(tokenizer)
        for token_id in generated:
            print(stream.push(token_id), end="")
        print(stream.flush())
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = False) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0  # start of the context window: ids already emitted, decoded for context
        self._read = 0  # ids before this index have been emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one id; return the text that is now complete ("" while a character is partial)."""
        self._ids.append(token_id)
        context = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        if len(text) <= len(context) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(context) :]

    def flush(self) -> str:
        """The text still held back, at the end of the stream (U+FFFD if a character is cut)."""
        context = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        self._ids, self._prefix, self._read = [], 0, 0
        return text[len(context) :]


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TokenizerError(f"{path}: no such file")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return config


def _token_content(value: str | dict[str, Any] | None) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _chat_template(config: dict[str, Any], directory: Path) -> str | None:
    template = config.get("chat_template")
    # Some models ship several named templates; "default" is the one for plain chat.
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if template is None and (directory / CHAT_TEMPLATE_FILE).is_file():
        template = (directory / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    return template
