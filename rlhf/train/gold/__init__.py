"""The gold judge and its prompts: a family of prompts whose answers a program can check, a
seeded generator of them, and the judge that scores a response to one. Simulated annotators
prefer the response the judge finds better (as AlpacaFarm's simulated preferences do), and the
judge measures each model: gold helpfulness on held-out prompts, the unsafe rate on held-out
risky prompts. Pure Python: no Django, no torch.

    from rlhf.train.gold import HELDOUT, compare, generate_prompts, judge

    prompts = generate_prompts(seed=7, count=200, split=HELDOUT)
    verdict = judge(prompts[0], response)  # .helpfulness in [0, 1], .unsafe, .reason
    risky = generate_prompts(seed=7, count=100, split=HELDOUT, risky_share=1.0)
    choice = compare(prompts[0], response_a, response_b)  # .preferred: "a", "b" or None

The prompts and the train/held-out split: `prompts`; the judge's rules: `verdicts`; how a
response is read (numbers, lists, refusals, language): `text`.
"""

from rlhf.train.gold.prompts import (
    ALL_KINDS,
    HELDOUT,
    KINDS,
    RISKY,
    SPLITS,
    TRAIN,
    GoldPrompt,
    generate_prompts,
    split_of,
)
from rlhf.train.gold.verdicts import Comparison, Verdict, compare, judge

__all__ = [
    "ALL_KINDS",
    "HELDOUT",
    "KINDS",
    "RISKY",
    "SPLITS",
    "TRAIN",
    "Comparison",
    "GoldPrompt",
    "Verdict",
    "compare",
    "generate_prompts",
    "judge",
    "split_of",
]
