"""Bradley–Terry ratings of the model versions from the annotators' labels.

Every label that compared two different versions is one game, won by the chosen response's
version (a batch served by one model at two temperatures plays no games). The strengths p_i
of the Bradley–Terry model, P(i beats j) = p_i / (p_i + p_j), are fitted by Hunter's MM
algorithm (2004) and reported on Chatbot Arena's Elo-like scale:

    rating_i = 1000 + 400 · log10(p_i / p_anchor)

so the anchor (the base model) is 1000 and a version 400 points above another wins ten games
of eleven against it. Each version also plays one virtual game against the anchor that it
half wins and half loses: a version that won (or lost) every game would otherwise have no
finite rating, and the virtual games connect every version to the anchor. They pull a rating
toward 1000 by about one game's worth.

The 95% intervals come from the bootstrap: the games are resampled with replacement (seeded),
the model refitted each round, and the 2.5th and 97.5th percentiles of each rating kept. Where
every game between two versions went one way, every resample is the same and the interval has
no width: that says the games were unanimous, not that the rating is certain.

Django-free: it is given the label rows (annotation.export.training_records' shape).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ANCHOR_RATING = 1000.0
SCALE = 400.0  # rating points per factor of ten in the odds
VIRTUAL_GAMES = 1.0
ROUNDS = 200
TOLERANCE = 1e-9  # on log-strengths, between MM iterations
MAX_ITERATIONS = 100_000

Game = tuple[str, str]  # (winner, loser)


@dataclass(frozen=True)
class Rating:
    version: str
    rating: float
    low: float  # the bootstrap's 2.5th percentile
    high: float  # and its 97.5th
    games: int  # real games played (the virtual one aside)
    wins: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def games_from_labels(rows: Iterable[Mapping[str, Any]]) -> list[Game]:
    """(winner, loser) of every label whose two responses came from different versions."""
    return [
        (row["chosen_model"], row["rejected_model"])
        for row in rows
        if row["chosen_model"]
        and row["rejected_model"]
        and row["chosen_model"] != row["rejected_model"]
    ]


def rate(
    games: Sequence[Game],
    *,
    anchor: str,
    rounds: int = ROUNDS,
    seed: int = 0,
    virtual_games: float = VIRTUAL_GAMES,
) -> list[Rating]:
    """The ratings of every version that played, and the anchor's (1000), best first."""
    versions = sorted({version for game in games for version in game} | {anchor})
    index = {version: i for i, version in enumerate(versions)}
    wins = np.zeros((len(versions), len(versions)))
    for winner, loser in games:
        wins[index[winner], index[loser]] += 1
    fitted = fit_ratings(wins[None], index[anchor], virtual_games)[0]
    bootstrap = fit_ratings(
        _resampled(wins, rounds, np.random.default_rng(seed)), index[anchor], virtual_games
    )
    low, high = np.percentile(bootstrap, [2.5, 97.5], axis=0)
    played, won = wins.sum(0) + wins.sum(1), wins.sum(1)
    ratings = [
        Rating(
            version=version,
            rating=float(fitted[i]),
            low=float(low[i]),
            high=float(high[i]),
            games=int(played[i]),
            wins=int(won[i]),
        )
        for version, i in index.items()
    ]
    return sorted(ratings, key=lambda r: (-r.rating, r.version))


def fit_ratings(wins: np.ndarray, anchor: int, virtual_games: float) -> np.ndarray:
    """Ratings from win counts, many fits at once: wins[r, i, j] is how often i beat j in
    fit r; returns [r, i]. MM updates p_i = W_i / Σ_j n_ij / (p_i + p_j), rescaled so the
    anchor's strength stays 1, until no log-strength moves by TOLERANCE."""
    wins = wins.copy()
    others = np.arange(wins.shape[1]) != anchor
    wins[:, others, anchor] += virtual_games / 2
    wins[:, anchor, others] += virtual_games / 2
    games = wins + wins.transpose(0, 2, 1)
    won = wins.sum(2)
    strength = np.ones(wins.shape[:2])
    for _ in range(MAX_ITERATIONS):
        pairs = strength[:, :, None] + strength[:, None, :]
        updated = won / (games / pairs).sum(2)
        updated /= updated[:, anchor : anchor + 1]
        moved = np.abs(np.log(updated) - np.log(strength)).max()
        strength = updated
        if moved < TOLERANCE:
            break
    return ANCHOR_RATING + SCALE * np.log10(strength)


def _resampled(wins: np.ndarray, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """`rounds` bootstrap samples of the games: as many games drawn with replacement, which is
    a multinomial draw over the (winner, loser) cells weighted by their counts."""
    total = int(wins.sum())
    if total == 0:
        return np.repeat(wins[None], rounds, axis=0)
    drawn = rng.multinomial(total, wins.ravel() / total, size=rounds)
    return drawn.reshape(rounds, *wins.shape).astype(float)
