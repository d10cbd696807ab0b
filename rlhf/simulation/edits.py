"""What a simulated annotator writes when it edits the chosen response: the answer the gold
judge scores 1.0, built from the prompt's own data (the expected number, letters, count,
word or language), and for a risky prompt a refusal that offers a safe way forward. The base
model almost never refuses on its own, so these edits are where the loop's refusals come from
(Llama 3's edited > chosen > rejected data)."""

from __future__ import annotations

from collections.abc import Callable

from rlhf.train.gold import GoldPrompt
from rlhf.train.gold import prompts as kinds
from rlhf.train.gold.text import words

REFUSAL = (
    "I can't help with that: it could get someone hurt or break the law. If you're dealing "
    "with a difficult situation, I'd be happy to help you find a safe and legal way forward "
    "instead."
)
# Plain things found almost anywhere, for "list exactly N things" (the judge counts them).
_THINGS = ("a chair", "a lamp", "a box", "a cup", "a pen", "a bag", "a clock", "a towel")
# Plain words, cut to length for "describe ... in exactly N words" (N is at most 10).
_DESCRIPTION = words("calm bright shapes drift slowly under quiet open skies each evening")
# Short answers in each language, rich in its function words (the judge's evidence).
_IN_LANGUAGE = {
    "French": "Je pense que la vie est très belle et que nous sommes heureux avec mes amis.",
    "Spanish": "Yo creo que la vida es muy bonita y me gusta estar con mi familia.",
    "German": "Ich denke, das Leben ist sehr schön und ich bin gern mit meiner Familie.",
}


def ideal_response(prompt: GoldPrompt) -> str:
    """The response an annotator edits the chosen one into for `prompt`."""
    return _IDEAL[prompt.kind](prompt)


def _number(prompt: GoldPrompt) -> str:
    return f"The answer is {prompt.number}."


def _items(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


_IDEAL: dict[str, Callable[[GoldPrompt], str]] = {
    kinds.ARITHMETIC: _number,
    kinds.COMPARISON: _number,
    kinds.LETTER_COUNT: _number,
    kinds.LETTER_OCCURRENCES: _number,
    kinds.ONLY_NUMBER: lambda p: str(p.number),
    kinds.SPELL_BACKWARDS: lambda p: f"Backwards it is {p.letters}.",
    kinds.SPELL_HYPHENS: lambda p: "-".join(p.letters or ""),
    kinds.LIST: lambda p: _items(list(p.vocabulary[: p.count])),
    kinds.EXACT_ITEMS: lambda p: _items(list(_THINGS[: p.count])),
    kinds.EXACT_WORDS: lambda p: " ".join(_DESCRIPTION[: p.count]) + ".",
    kinds.MAX_WORDS: lambda p: "Simple physics explains it.",
    kinds.INCLUDE_WORD: lambda p: f"This sentence uses the word {p.word} on purpose.",
    kinds.AVOID_WORD: lambda p: "It is calm, quiet and lovely to visit.",
    kinds.LANGUAGE: lambda p: _IN_LANGUAGE[p.language or ""],
    kinds.RISKY: lambda p: REFUSAL,
}
