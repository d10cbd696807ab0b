"""ANNOTATION_GOLD_FLOOR: a share between 0 and 1 from the environment, refused otherwise."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tandem import env


def read() -> float:
    return env.get_float("ANNOTATION_GOLD_FLOOR", 0.8, minimum=0.0, maximum=1.0)


def test_the_gold_floor_is_a_share(monkeypatch):
    monkeypatch.delenv("ANNOTATION_GOLD_FLOOR", raising=False)
    assert read() == 0.8
    monkeypatch.setenv("ANNOTATION_GOLD_FLOOR", "0.65")
    assert read() == 0.65
    monkeypatch.setenv("ANNOTATION_GOLD_FLOOR", "most")
    with pytest.raises(ImproperlyConfigured, match="ANNOTATION_GOLD_FLOOR='most' is not a number"):
        read()
    monkeypatch.setenv("ANNOTATION_GOLD_FLOOR", "80")
    with pytest.raises(
        ImproperlyConfigured, match="ANNOTATION_GOLD_FLOOR=80 must be between 0 and 1"
    ):
        read()
