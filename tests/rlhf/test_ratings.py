"""Bradley–Terry ratings against hand-computed values: two versions with a known win rate are a
known rating difference apart (400·log10 of the odds), a chain of versions adds up, the anchor
stays at 1000, and the bootstrap's intervals narrow as games accumulate."""

from __future__ import annotations

import math

import pytest

from rlhf.ratings import ANCHOR_RATING, games_from_labels, rate


def games(winner: str, loser: str, won: int, lost: int) -> list[tuple[str, str]]:
    return [(winner, loser)] * won + [(loser, winner)] * lost


def by_version(ratings) -> dict:
    return {r.version: r for r in ratings}


def test_a_known_win_rate_is_a_known_rating_difference():
    # 75 of 100: odds 3, so 400·log10(3) = 190.8 points, with no virtual games.
    rated = by_version(rate(games("new", "base", 75, 25), anchor="base", virtual_games=0))
    assert rated["base"].rating == ANCHOR_RATING
    assert rated["new"].rating == pytest.approx(1000 + 400 * math.log10(3), abs=1e-6)
    assert (rated["new"].games, rated["new"].wins) == (100, 75)
    assert (rated["base"].games, rated["base"].wins) == (100, 25)


def test_the_virtual_game_counts_as_half_a_win_and_half_a_loss_against_the_anchor():
    rated = by_version(rate(games("new", "base", 75, 25), anchor="base"))
    assert rated["new"].rating == pytest.approx(1000 + 400 * math.log10(75.5 / 25.5), abs=1e-6)


def test_a_version_that_won_every_game_has_a_finite_rating():
    rated = by_version(rate(games("new", "base", 10, 0), anchor="base"))
    assert rated["new"].rating == pytest.approx(1000 + 400 * math.log10(10.5 / 0.5), abs=1e-6)
    assert math.isfinite(rated["new"].high)


def test_ratings_along_a_chain_add_up():
    # new beats mid 2:1 and mid beats base 2:1, never new against base: on a tree the fit is
    # exact, each edge 400·log10(2) = 120.4 points.
    played = games("new", "mid", 20, 10) + games("mid", "base", 40, 20)
    rated = by_version(rate(played, anchor="base", virtual_games=0))
    step = 400 * math.log10(2)
    assert rated["mid"].rating == pytest.approx(1000 + step, abs=1e-6)
    assert rated["new"].rating == pytest.approx(1000 + 2 * step, abs=1e-6)
    assert [r.version for r in rate(played, anchor="base")] == ["new", "mid", "base"]


def test_the_anchor_is_fixed_and_its_interval_has_no_width():
    [new, base] = rate(games("new", "base", 30, 20), anchor="base")
    assert (base.rating, base.low, base.high) == (1000, 1000, 1000)
    assert new.low < new.rating < new.high


def test_intervals_narrow_with_more_games():
    few = by_version(rate(games("new", "base", 6, 4), anchor="base"))["new"]
    many = by_version(rate(games("new", "base", 600, 400), anchor="base"))["new"]
    assert many.rating == pytest.approx(1000 + 400 * math.log10(600.5 / 400.5), abs=1e-6)
    # The width shrinks about as 1/sqrt(games): a hundred times the games, a tenth the width.
    assert (many.high - many.low) < (few.high - few.low) / 5
    assert many.low < many.rating < many.high


def test_the_bootstrap_is_seeded():
    played = games("new", "base", 30, 20)
    assert rate(played, anchor="base", seed=3) == rate(played, anchor="base", seed=3)
    assert rate(played, anchor="base", seed=3) != rate(played, anchor="base", seed=4)


def test_the_anchor_is_rated_even_when_it_did_not_play():
    rated = by_version(rate(games("b", "a", 3, 1), anchor="base"))
    assert rated["base"].rating == 1000 and rated["base"].games == 0
    assert rated["b"].rating > rated["a"].rating


def test_only_labels_between_two_versions_are_games():
    rows = [
        {"chosen_model": "new", "rejected_model": "base"},
        {"chosen_model": "base", "rejected_model": "base"},  # one model at two temperatures
        {"chosen_model": None, "rejected_model": "base"},
    ]
    assert games_from_labels(rows) == [("new", "base")]
