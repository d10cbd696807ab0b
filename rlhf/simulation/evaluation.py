"""The gold evaluation of a model version, in the calling process: the version answers held-out
gold prompts (`rlhf.serving.sample_reply`, one fixed seed per prompt, the same for every
version), and the gold judge scores the answers.

- gold helpfulness: the mean helpfulness on the held-out harmless prompts;
- unsafe rate: the share of unsafe answers to the held-out risky prompts (gold safety is one
  minus it);
- win rate against the base model: over both sets, the share of prompts where the judge
  prefers this version's answer to the base's, a tie counting half.

The held-out prompts are of the gold split HELDOUT, which never shares a text with the TRAIN
prompts the annotators write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelcore.chat import Message
from modelcore.sampling import SamplingParams
from rlhf.models import ModelVersion
from rlhf.serving import sample_reply
from rlhf.train.gold import HELDOUT, GoldPrompt, compare, generate_prompts, judge

TEMPERATURE, TOP_P = 0.7, 0.9  # as the batches sample their newest model


@dataclass(frozen=True)
class GoldSet:
    harmless: list[GoldPrompt]
    risky: list[GoldPrompt]

    @classmethod
    def drawn(cls, seed: int, count: int) -> GoldSet:
        """`count` held-out harmless prompts and `count` held-out risky ones."""
        return cls(
            harmless=generate_prompts(seed, count, split=HELDOUT, risky_share=0.0),
            risky=generate_prompts(seed + 1, count, split=HELDOUT, risky_share=1.0),
        )

    @property
    def prompts(self) -> list[GoldPrompt]:
        return [*self.harmless, *self.risky]


def answer(
    version: ModelVersion, prompts: list[GoldPrompt], *, seed: int, max_new_tokens: int
) -> list[str]:
    """The version's reply to each prompt, prompt i sampled with seed `seed` + i."""
    return [
        sample_reply(
            version,
            [Message("user", prompt.text)],
            SamplingParams(
                max_new_tokens=max_new_tokens,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                seed=seed + index,
            ),
            lambda text: None,
        )[0]
        for index, prompt in enumerate(prompts)
    ]


def gold_scores(gold: GoldSet, answers: list[str], base_answers: list[str]) -> dict[str, Any]:
    """The figures of the module docstring; `answers` and `base_answers` follow gold.prompts."""
    harmless = answers[: len(gold.harmless)]
    risky = answers[len(gold.harmless) :]
    wins = [
        {"a": 1.0, "b": 0.0, None: 0.5}[compare(prompt, mine, base).preferred]
        for prompt, mine, base in zip(gold.prompts, answers, base_answers, strict=True)
    ]
    unsafe = [judge(p, a).unsafe for p, a in zip(gold.risky, risky, strict=True)]
    return {
        "gold_helpfulness": _mean(
            [judge(p, a).helpfulness for p, a in zip(gold.harmless, harmless, strict=True)]
        ),
        "unsafe_rate": _mean(unsafe),
        "gold_safety": None if not unsafe else 1.0 - _mean(unsafe),
        "win_rate_vs_base": _mean(wins),
        "prompts": {"harmless": len(gold.harmless), "risky": len(gold.risky)},
    }


def samples(version: str, gold: GoldSet, answers: list[str]) -> list[dict[str, Any]]:
    """Each answer with its prompt and verdict, for reading what the figures are made of."""
    return [
        {
            "version": version,
            "kind": prompt.kind,
            "prompt": prompt.text,
            "response": response,
            **vars(judge(prompt, response)),
        }
        for prompt, response in zip(gold.prompts, answers, strict=True)
    ]


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None
