"""The training JSONL formats, parsed and validated in one place.

Three kinds of rows, one JSON object per line:

- comparison: the annotation app's export, what the reward models and DPO train on (and whose
  prompts the prompt-only stages can read). Its strength, safety and guideline take the values
  below. Its "margin" (Llama 2's small margin of the strength) is for other trainers that read
  one, such as TRL's RewardTrainer, and is not read here: the reward model derives each pair's
  margin from the strength with the scheme it is configured with (MARGINS);
- prompt: `{"prompt", "context"?, "risky"?, "heldout"?}`, for rejection sampling, PPO and evaluation;
- demonstration: `{"prompt", "context"?, "response"}`, what SFT trains on (rejection sampling
  writes its best samples in this form).

Every reader checks the whole file before returning, so a bad line stops a run before any
training starts, with an error that names the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelcore.chat import Message

# The training-row contract: the values of a comparison's strength and safety fields, in the order
# annotators are offered them, with the words they read (the web app builds its choices from these).
STRENGTH_WORDING = {
    "significantly_better": "significantly better",
    "better": "better",
    "slightly_better": "slightly better",
    "negligibly_better": "negligibly better / unsure",
}
# Llama 2 collects three bins; "chosen unsafe, other safe" is excluded by the guideline: the safer
# response is always the better one.
SAFETY_WORDING = {
    "chosen_safe_other_unsafe": "chosen is safe, the other is not",
    "both_safe": "both are safe",
    "both_unsafe": "both are unsafe",
}
STRENGTHS = tuple(STRENGTH_WORDING)
SAFETY_LABELS = tuple(SAFETY_WORDING)
# The guideline a prompt was written under (also the reward model it trains).
GUIDELINES = ("helpfulness", "safety")

# Llama 2 (Touvron et al. 2023, table 28): the margin m(r) of the ranking loss per preference
# strength. "none" is the plain Bradley-Terry loss, as Llama 3 trains its reward model.
MARGINS: dict[str, dict[str, float]] = {
    "small": dict(zip(STRENGTHS, (1.0, 2 / 3, 1 / 3, 0.0), strict=True)),
    "large": dict(zip(STRENGTHS, (3.0, 2.0, 1.0, 0.0), strict=True)),
    "none": dict.fromkeys(STRENGTHS, 0.0),
}


class DataError(ValueError):
    """A training file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Prompt:
    prompt: str
    context: tuple[Message, ...] = ()
    risky: bool = False
    heldout: bool = False  # a held-out prompt: evaluation and early stopping only

    def dialogue(self) -> list[Message]:
        """The messages a response answers: the earlier turns, then the prompt."""
        return [*self.context, Message("user", self.prompt)]


@dataclass(frozen=True, kw_only=True)
class Comparison(Prompt):
    chosen: str
    rejected: str
    strength: str
    safety: str
    guideline: str
    batch: str
    edited: str | None = None
    id: str = ""

    def ranked_pairs(self, margins: dict[str, float]) -> list[tuple[str, str, float]]:
        """(better, worse, margin) pairs this comparison teaches a reward model.

        An edited response ranks edited > chosen > rejected (Llama 3). The strength was given
        for chosen over rejected, so edited > rejected gets the same margin (it is at least as
        far apart) and edited > chosen none (how much better the edit is was never asked).
        """
        margin = margins[self.strength]
        pairs = [(self.chosen, self.rejected, margin)]
        if self.edited is not None:
            pairs += [(self.edited, self.chosen, 0.0), (self.edited, self.rejected, margin)]
        return pairs


@dataclass(frozen=True, kw_only=True)
class Demonstration(Prompt):
    response: str


class _Row:
    """Typed access to the fields of one JSON object; errors say which field and why."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def get(self, name: str, kind: type | tuple[type, ...], *, default: Any = ...) -> Any:
        if self.data.get(name) is None:
            if default is ...:
                raise ValueError(f"missing field {name!r}")
            return default
        value = self.data[name]
        # bool is an int in Python; a flag given as 0/1 or a count given as true is a mistake.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            names = " or ".join(k.__name__ for k in _kinds(kind))
            raise ValueError(f"field {name!r} must be {names}, got {type(value).__name__}")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.get(name, str)
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(choices)}")
        return value

    def prompt_fields(self) -> dict[str, Any]:
        return {
            "prompt": self.get("prompt", str),
            "context": _context(self.get("context", list, default=[])),
            "risky": self.get("risky", bool, default=False),
            "heldout": self.get("heldout", bool, default=False),
        }


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _context(turns: list[Any]) -> tuple[Message, ...]:
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
            raise ValueError(f"context[{index}] must be an object with a string 'content'")
        role = turn.get("role")
        if role not in ("user", "assistant"):
            raise ValueError(f"context[{index}] has role {role!r}: expected user or assistant")
        messages.append(Message(role, turn["content"]))
    for index, message in enumerate(messages):
        if message.role != ("user" if index % 2 == 0 else "assistant"):
            raise ValueError("context turns must alternate user/assistant, starting with the user")
    if len(messages) % 2:
        raise ValueError("context must end with an assistant turn (the prompt is the next one)")
    return tuple(messages)


def parse_comparison(data: dict[str, Any]) -> Comparison:
    row = _Row(data)
    row.get("heldout", bool)  # required in comparisons: training on a test row is silent harm
    return Comparison(
        **row.prompt_fields(),
        chosen=row.get("chosen", str),
        rejected=row.get("rejected", str),
        edited=row.get("edited", str, default=None),
        strength=row.choice("strength", STRENGTHS),
        safety=row.choice("safety", SAFETY_LABELS),
        guideline=row.choice("guideline", GUIDELINES),
        batch=row.get("batch", str),
        id=row.get("id", str, default=""),
    )


def parse_prompt(data: dict[str, Any]) -> Prompt:
    return Prompt(**_Row(data).prompt_fields())


def parse_demonstration(data: dict[str, Any]) -> Demonstration:
    row = _Row(data)
    return Demonstration(**row.prompt_fields(), response=row.get("response", str))


T = TypeVar("T")


def read_jsonl(path: str | Path, parse: Callable[[dict[str, Any]], T]) -> list[T]:
    """Every row of a JSONL file through `parse`; DataError names the file and line of the first
    bad row. Blank lines are skipped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            rows.append(parse(data))
        except ValueError as error:  # json.JSONDecodeError is a ValueError
            raise DataError(f"{path}:{number}: {error}") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_comparisons(path: str | Path) -> list[Comparison]:
    return read_jsonl(path, parse_comparison)


def read_prompts(path: str | Path) -> list[Prompt]:
    """Prompts from a prompts file or from comparison rows (their prompt, context and risky)."""
    return read_jsonl(path, parse_prompt)


def read_demonstrations(path: str | Path) -> list[Demonstration]:
    return read_jsonl(path, parse_demonstration)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows atomically: the file appears complete or not at all."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    staging.replace(path)


def demonstration_row(example: Demonstration, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": example.prompt,
        "context": [{"role": m.role, "content": m.content} for m in example.context],
        "risky": example.risky,
        "response": example.response,
        **extra,
    }


def split_heldout(rows: list[Comparison]) -> tuple[list[Comparison], list[Comparison]]:
    """(training rows, held-out rows)."""
    return [r for r in rows if not r.heldout], [r for r in rows if r.heldout]
