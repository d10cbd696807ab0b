"""annotation.agreement against published worked examples, and κ against krippendorff's α."""

from __future__ import annotations

import numpy as np
import pytest

from annotation.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha

# Fleiss (1971), as in Wikipedia's "Fleiss' kappa": 10 subjects, 14 raters, 5 categories.
FLEISS_1971 = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_the_1971_table():
    assert fleiss_kappa(FLEISS_1971) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_and_nominal_alpha_differ_only_by_the_sample_size():
    # With every item rated by the same number of raters, 1 - α = (1 - κ)(n - 1)/n, n the
    # number of ratings (Krippendorff's small-sample correction of the same expected
    # disagreement).
    n = np.sum(FLEISS_1971)
    kappa, alpha = fleiss_kappa(FLEISS_1971), krippendorff_alpha(FLEISS_1971, "nominal")
    assert 1 - alpha == pytest.approx((1 - kappa) * (n - 1) / n)


def test_cohen_kappa_of_wikipedias_example():
    # 50 proposals read by two readers: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no.
    assert cohen_kappa([[20, 5], [10, 15]]) == pytest.approx(0.4)
    assert cohen_kappa([[5, 0], [0, 5]]) == pytest.approx(1.0)


def test_krippendorffs_ordinal_example():
    # Krippendorff's worked example (as in the krippendorff package's docs): 4 coders, 12 units,
    # values 1-5, here as a units x values tally.
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    tally = np.zeros((12, 5))
    for coder in data:
        for unit, value in enumerate(coder):
            if value is not None:
                tally[unit, value - 1] += 1
    assert krippendorff_alpha(tally, "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_undefined_agreement_is_none():
    assert krippendorff_alpha(np.zeros((0, 8)), "ordinal") is None
    assert krippendorff_alpha([[1, 0], [0, 1]], "nominal") is None  # no item rated twice
    assert krippendorff_alpha([[2, 0], [3, 0]], "nominal") is None  # one value only
    assert fleiss_kappa([[2, 0], [3, 0]]) is None
    assert fleiss_kappa(np.zeros((0, 2))) is None
    assert cohen_kappa([[0, 0], [0, 0]]) is None
