"""Figures as the admin shows them: a dash where there is no value (an empty batch has no
median), thousands separated."""

from __future__ import annotations


def percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def seconds(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"
