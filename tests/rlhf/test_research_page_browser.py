"""The research pages in Chromium: a researcher logs in through the login page and sees the
figures across versions, follows an iteration's link and sees its charts, drawn and legible."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.frontend.conftest import log_in
from tests.rlhf.research_fixtures import (
    evaluated_policy,
    rejection_ppo_iteration,
    serve_two_versions,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_researcher_sees_the_charts(page, live_server, world, people):
    evaluated_policy("iteration-9-policy", world.base, iteration=world.iteration)
    serve_two_versions(world.closed, winner=world.trained, loser=world.base)
    iteration = rejection_ppo_iteration(world.base)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    log_in(page, live_server, people.researcher, next_path="/research/")
    expect(page.get_by_role("heading", name="Model versions")).to_be_visible()
    for key in ("policy-progression", "version-ratings"):
        chart = page.locator(f"#chart-{key} svg")
        expect(chart).to_be_visible()
        assert chart.bounding_box()["width"] > 300  # drawn, not collapsed
    # Named for screen readers by its title.
    expect(page.get_by_role("img", name=re.compile("^Bradley–Terry rating"))).to_be_visible()
    # Text kept as text: the version names on the ratings chart can be found as words.
    expect(page.locator("#chart-version-ratings svg text", has_text="tiny-dpo-1")).to_have_count(1)
    expect(page.locator("#ratings tbody tr")).to_have_count(2)

    page.get_by_role("link", name=str(iteration.pk), exact=True).click()
    expect(page.get_by_role("heading", name=f"Iteration {iteration.pk}:")).to_be_visible()
    expect(page.locator(".chart svg")).to_have_count(6)
    expect(page.locator("#chart-ppo-kl svg")).to_be_visible()
    expect(page.locator("#progress")).to_contain_text("step 3 of 8")
    assert errors == []
