"""Builders shared by the rlhf.train tests: a tiny character-level tokenizer and model, and
comparison rows generated from questions with one right answer."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from modelcore.config import ModelConfig
from modelcore.model import LlamaLM
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import MARGINS, STRENGTHS
from tests.llama_tokenizer import llama_style_tokenizer

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Poland": "Warsaw",
    "Hungary": "Budapest",
    "Denmark": "Copenhagen",
    "Belgium": "Brussels",
    "Peru": "Lima",
    "Argentina": "Buenos Aires",
    "Mexico": "Mexico City",
    "Canada": "Ottawa",
    "Kenya": "Nairobi",
    "Thailand": "Bangkok",
    "Turkey": "Ankara",
    "Cuba": "Havana",
    "England": "London",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Chile": "Santiago",
    "Colombia": "Bogota",
    "Ukraine": "Kyiv",
    "Czechia": "Prague",
    "Vietnam": "Hanoi",
    "Indonesia": "Jakarta",
    "Philippines": "Manila",
    "South Korea": "Seoul",
    "Saudi Arabia": "Riyadh",
    "Australia": "Canberra",
}


def tiny_tokenizer() -> Tokenizer:
    """Characters as tokens, sentencepiece-style spaces, Llama 2's chat format."""
    return llama_style_tokenizer()


def tiny_policy(vocab_size: int, seed: int = 0) -> LlamaLM:
    torch.manual_seed(seed)
    config = ModelConfig.from_name(
        "smollm2-135m",
        vocab_size=vocab_size,
        dim=32,
        n_layers=3,
        n_heads=4,
        n_kv_heads=2,
        intermediate_size=64,
        max_seq_len=256,
    )
    return LlamaLM(config).eval()


def comparison(
    prompt: str, chosen: str, rejected: str, *, index: int, heldout: bool, **fields: Any
) -> dict[str, Any]:
    strength = STRENGTHS[index % len(STRENGTHS)]
    return {
        "id": f"2026-W48/c{index}/l{index}",
        "batch": "2026-W48",
        "heldout": heldout,
        "guideline": "helpfulness",
        "risky": False,
        "context": [],
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "edited": None,
        "strength": strength,
        "margin": MARGINS["small"][strength],
        "safety": "both_safe",
        "annotator": "alice",
        "chosen_model": "smollm2-135m-instruct",
        "rejected_model": "smollm2-135m-instruct",
        "labelled_at": "2026-11-23T10:00:00+00:00",
        **fields,
    }


OPPOSITES = {
    "hot": "cold",
    "big": "small",
    "up": "down",
    "fast": "slow",
    "light": "dark",
    "happy": "sad",
    "open": "closed",
    "early": "late",
    "wet": "dry",
    "full": "empty",
    "hard": "soft",
    "old": "young",
    "rich": "poor",
    "strong": "weak",
    "loud": "quiet",
    "thick": "thin",
    "high": "low",
    "clean": "dirty",
    "long": "short",
    "heavy": "light",
    "inside": "outside",
    "before": "after",
    "win": "lose",
    "day": "night",
}


def knowledge_questions() -> list[tuple[str, str, list[str]]]:
    """(question, answer sentence, wrong answer sentences): capitals and opposites, each with
    one right answer that SmolLM2 knows. (Sums of small numbers were tried too: a reward model
    on SmolLM2's top two blocks ranked them at 65% after one epoch, so they are no test of
    the training code.)"""
    capitals = list(CAPITALS.values())
    words = list(OPPOSITES.values())
    questions = [
        (
            f"What is the capital of {country}?",
            f"The capital of {country} is {capital}.",
            [f"The capital of {country} is {c}." for c in capitals if c != capital],
        )
        for country, capital in CAPITALS.items()
    ]
    questions += [
        (
            f"What is the opposite of {word}?",
            f"The opposite of {word} is {opposite}.",
            [f"The opposite of {word} is {w}." for w in [word, *words] if w != opposite],
        )
        for word, opposite in OPPOSITES.items()
    ]
    return questions


def knowledge_rows(
    *, pairs_per_question: int, heldout_share: float, seed: int, heldout_pairs: int = 1
) -> list[dict[str, Any]]:
    """Right answer chosen over wrong ones; held-out rows ask questions never trained on."""
    rng = random.Random(seed)
    questions = knowledge_questions()
    rng.shuffle(questions)
    cut = round(len(questions) * heldout_share)
    rows = []
    for number, (question, answer, wrong) in enumerate(questions):
        heldout = number < cut
        for rejected in rng.sample(wrong, heldout_pairs if heldout else pairs_per_question):
            rows.append(comparison(question, answer, rejected, index=len(rows), heldout=heldout))
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
