"""Chance-corrected agreement from counts, for annotation.stats (which has the database count).

Every function takes tallies, never one row per label: `value_counts` is a matrix of items ×
values (how many annotators gave each value to each item), `confusion` a matrix of one rater's
values × the other's. An agreement that is undefined (no pair of ratings, or every rating the
same so that chance agreement is perfect) is None, not NaN.

- Krippendorff's α through the `krippendorff` package: any number of annotators per item,
  items with fewer than two ratings ignored, and a level of measurement (ordinal here: the
  signed strength).
- Fleiss' κ in its form for a varying number of raters per item: P_i = (Σ_j n_ij² − n_i) /
  (n_i (n_i − 1)), P̄ the mean of P_i over the items with n_i ≥ 2, p_j = Σ_i n_ij / Σ_i n_i,
  P_e = Σ_j p_j², κ = (P̄ − P_e) / (1 − P_e) (Fleiss 1971 with every n_i equal).
- Cohen's κ = (p_o − p_e) / (1 − p_e) from a confusion matrix: p_o its diagonal share, p_e the
  product of the two raters' marginal shares, summed over the values.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import numpy.typing as npt


def _pairable(value_counts: npt.ArrayLike) -> np.ndarray:
    """The rows (items) of a 2-D tally with two ratings or more: only those can agree."""
    counts = np.asarray(value_counts, dtype=np.float64)
    return counts[counts.sum(axis=1) >= 2]


def krippendorff_alpha(value_counts: npt.ArrayLike, level: str) -> float | None:
    """α over the items × values tally, values ordered as the columns (ordinal: their order)."""
    counts = _pairable(value_counts)
    if len(counts) == 0 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    return float(krippendorff.alpha(value_counts=counts, level_of_measurement=level))


def fleiss_kappa(value_counts: npt.ArrayLike) -> float | None:
    counts = _pairable(value_counts)
    if len(counts) == 0:
        return None
    raters = counts.sum(axis=1)
    per_item = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / raters.sum()
    chance = float((shares**2).sum())
    if chance >= 1.0:
        return None
    return (float(per_item.mean()) - chance) / (1.0 - chance)


def cohen_kappa(confusion: npt.ArrayLike) -> float | None:
    table = np.asarray(confusion, dtype=np.float64)
    total = table.sum()
    if total == 0:
        return None
    observed = np.trace(table) / total
    chance = float((table.sum(axis=1) / total) @ (table.sum(axis=0) / total))
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)
