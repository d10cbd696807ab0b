"""Chat formatting: a dialogue becomes token ids, with a mask over the assistant's replies.

Every format is a Jinja chat template rendered the way Hugging Face renders them (variables
`messages`, `add_generation_prompt`, `bos_token`, `eos_token`, function `raise_exception`): the
model's own template (SmolLM2's ChatML, read from the GGUF or tokenizer_config.json) and a
built-in Llama 2 template.

    template = ChatTemplate.for_tokenizer(tokenizer)
    dialogue = [Message("user", "Hi"), Message("assistant", "Hello!")]
    encoded = encode_dialogue(tokenizer, template, dialogue, add_generation_prompt=False)
    # SFT trains on encoded.ids where encoded.assistant_mask is True
    prompt = encode_dialogue(tokenizer, template, dialogue[:1], add_generation_prompt=True).ids
    # sample from prompt until one of stop_ids(tokenizer, template)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modelcore.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
TEMPLATE_NAMES = ("model", "chatml", "llama2")

# Meta's reference format (llama/generation.py, `chat_completion`): the system prompt is folded
# into the first user message, each user turn is "[INST] {user} [/INST]" after BOS, and each
# answer is " {answer} " followed by EOS; user and answer text are stripped.
_LLAMA2_TEMPLATE = """\
{%- if messages[0]['role'] == 'system' -%}
    {%- set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' -%}
    {%- set messages = messages[1:] -%}
{%- else -%}
    {%- set system = '' -%}
{%- endif -%}
{%- for message in messages -%}
    {%- if message['role'] == 'user' -%}
        {{- bos_token + '[INST] ' + ((system if loop.first else '') + message['content']) | trim + ' [/INST]' -}}
    {%- else -%}
        {{- ' ' + message['content'] | trim + ' ' + eos_token -}}
    {%- endif -%}
{%- endfor -%}
"""


def _raise_exception(message: str) -> None:
    raise ValueError(f"chat template: {message}")


# The settings transformers renders chat templates with, so a model's template means the same here.
_JINJA = ImmutableSandboxedEnvironment(
    trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
)
_JINJA.globals["raise_exception"] = _raise_exception


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}: expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be a string, not {type(self.content).__name__}")


def validate_dialogue(messages: Sequence[Message], *, add_generation_prompt: bool) -> None:
    """Raise ValueError unless `messages` is an optional system message followed by turns that
    alternate user/assistant from the user, ending on the user when a reply is to be generated
    and on the assistant otherwise (a training dialogue)."""
    first_turn = 1 if messages and messages[0].role == "system" else 0
    if len(messages) == first_turn:
        raise ValueError("a dialogue needs at least one user message")
    for index in range(first_turn, len(messages)):
        role = messages[index].role
        if role == "system":
            raise ValueError(f"message {index} is a system message; only the first may be one")
        expected = "user" if (index - first_turn) % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(
                f"message {index} is from the {role} but should be from the {expected}: "
                "turns alternate user/assistant, starting with the user"
            )
    if add_generation_prompt and messages[-1].role != "user":
        raise ValueError("a prompt for generation must end with a user message")
    if not add_generation_prompt and messages[-1].role != "assistant":
        raise ValueError("a training dialogue must end with an assistant message")


def reject_special_tokens(tokenizer: Tokenizer, messages: Sequence[Message]) -> None:
    """Raise ValueError if a message's text holds a special token's string ("<|im_end|>"): the
    tokenizer would read it as the token itself, so text typed by a person could end a turn or
    forge another role's message."""
    for index, message in enumerate(messages):
        for token in tokenizer.special_tokens:
            if token in message.content:
                raise ValueError(
                    f"message {index} ({message.role}) contains {token!r}, which the model "
                    "reserves for its chat format"
                )


class ChatTemplate:
    """A compiled Jinja chat template."""

    def __init__(self, source: str, *, name: str = "model") -> None:
        self.name = name
        self.source = source
        try:
            self._template = _JINJA.from_string(source)
        except TemplateSyntaxError as exc:
            raise ValueError(f"chat template {name!r} is not valid Jinja: {exc}") from exc

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> ChatTemplate:
        """The model's own template, as its tokenizer files carry it."""
        if tokenizer.chat_template is None:
            raise ValueError("the tokenizer has no chat template; use ChatTemplate.llama2()")
        return cls(tokenizer.chat_template, name="model")

    @classmethod
    def llama2(cls) -> ChatTemplate:
        """Llama 2's `[INST]`/`<<SYS>>` format, with the tokenizer's BOS and EOS."""
        return cls(_LLAMA2_TEMPLATE, name="llama2")

    @classmethod
    def by_name(cls, name: str, tokenizer: Tokenizer) -> ChatTemplate:
        """A template by the name a training configuration gives: "model" (the tokenizer's own),
        "chatml" (the same, checked to be ChatML) or "llama2" (the built-in one)."""
        if name == "llama2":
            return cls.llama2()
        if name not in TEMPLATE_NAMES:
            raise ValueError(f"unknown chat template {name!r}: expected one of {TEMPLATE_NAMES}")
        template = cls.for_tokenizer(tokenizer)
        if name == "chatml" and "<|im_start|>" not in template.source:
            raise ValueError("the tokenizer's chat template is not ChatML; use 'model' for it")
        return template

    def render(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool,
        bos_token: str,
        eos_token: str,
    ) -> str:
        return self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )


@dataclass(frozen=True)
class EncodedDialogue:
    ids: list[int]
    # True on the tokens of the assistant's replies, each through its end-of-turn token (so SFT
    # learns to stop); False on system and user text and on role headers.
    assistant_mask: list[bool]


def encode_dialogue(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool,
) -> EncodedDialogue:
    """Render and tokenize a dialogue, marking the assistant's replies.

    The ids are the tokenization of the whole rendering, exactly what the model sees when it
    samples. A reply's characters are found by rendering prefixes of the dialogue, which works
    for any template: it runs from the end of the dialogue before it, generation prompt
    included, to the end of the dialogue through it. Tokens are assigned by their character
    offsets rather than by tokenizing each piece alone, because sentencepiece-style tokenizers
    tokenize a piece differently at the start of a text. Raises ValueError if the template
    does not render prefixes as prefixes, or if a token crosses a reply's boundary.
    """
    validate_dialogue(messages, add_generation_prompt=add_generation_prompt)
    reject_special_tokens(tokenizer, messages)
    render = partial(
        template.render, bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or ""
    )
    text = render(messages, add_generation_prompt=add_generation_prompt)
    ids, offsets = tokenizer.encode_with_offsets(text)

    def prefix_end(prefix: str) -> int:
        if not text.startswith(prefix):
            raise ValueError(
                f"chat template {template.name!r} renders part of a dialogue as something other "
                "than the start of the whole, so the assistant's replies cannot be located"
            )
        return len(prefix)

    replies: list[tuple[int, int]] = []  # character spans of the replies in `text`
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        start = prefix_end(render(messages[:index], add_generation_prompt=True))
        end = prefix_end(render(messages[: index + 1], add_generation_prompt=False))
        # Stop at the reply's last special token, its end of turn: what a template writes after
        # it (ChatML's "\n") is never generated, since sampling stops there.
        special_ends = [
            token_end
            for token_id, (token_start, token_end) in zip(ids, offsets, strict=True)
            if token_id in tokenizer.special_ids and start <= token_start and token_end <= end
        ]
        replies.append((start, special_ends[-1] if special_ends else end))

    def in_reply(token_id: int, token_start: int, token_end: int) -> bool:
        for start, end in replies:
            if start <= token_start and token_end <= end:
                return True
            if token_start < start < token_end or token_start < end < token_end:
                raise ValueError(
                    f"chat template {template.name!r}: token {tokenizer.id_to_token(token_id)!r} "
                    "crosses the boundary of an assistant reply, so the reply cannot be masked"
                )
        return False

    mask = [in_reply(i, s, e) for i, (s, e) in zip(ids, offsets, strict=True)]
    return EncodedDialogue(ids=ids, assistant_mask=mask)


def stop_ids(tokenizer: Tokenizer, template: ChatTemplate) -> list[int]:
    """The ids that end an assistant turn: the template's end-of-turn token (the special token a
    reply ends with, e.g. ChatML's <|im_end|>) and the tokenizer's EOS."""
    probe = [Message("user", "Hi"), Message("assistant", "Hello")]
    encoded = encode_dialogue(tokenizer, template, probe, add_generation_prompt=False)
    reply = [i for i, masked in zip(encoded.ids, encoded.assistant_mask, strict=True) if masked]
    ids = [reply[-1]] if reply and reply[-1] in tokenizer.special_ids else []
    if tokenizer.eos_id is not None:
        ids.append(tokenizer.eos_id)
    return list(dict.fromkeys(ids))
