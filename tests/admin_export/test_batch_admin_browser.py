"""An admin in Chromium: logs in to /admin/, opens the batch page, sees the statistics and
both charts drawn."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_opens_the_batch_page_and_sees_the_statistics(
    page, live_server, labelled, make_user
):
    boss = make_user("boss", staff=True)
    boss.is_superuser = True
    boss.save()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{live_server.url}/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "boss-password")
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()

    page.get_by_role("link", name="Batches").first.click()
    page.get_by_role("link", name="2026-w48").click()

    statistics = page.locator("#batch-statistics")
    expect(statistics).to_be_visible()
    summary = page.locator("#stat-summary")
    expect(summary.locator("tr", has_text="Labels").first).to_contain_text("6")
    expect(summary.locator("tr", has_text="Median time per label")).to_contain_text("35.0 s")
    expect(summary.locator("tr", has_text="Agreement")).to_contain_text("25.0% of 4")
    expect(page.locator("#stat-annotators tbody tr")).to_have_count(3)
    expect(page.locator("#stat-annotators tbody tr").first).to_contain_text("alice")

    # The charts are drawn: four strength bars and two days, with visible sizes.
    strength_bars = page.locator("#chart-strength rect.bar")
    expect(strength_bars).to_have_count(4)
    widths = [strength_bars.nth(i).bounding_box()["width"] for i in range(4)]
    assert widths[1] == max(widths) > 0  # "better": 2 of 6 labels
    assert widths[0] == pytest.approx(widths[1] / 2, abs=1)
    day_bars = page.locator("#chart-daily rect.bar")
    expect(day_bars).to_have_count(2)
    assert all(day_bars.nth(i).bounding_box()["height"] > 10 for i in range(2))
    expect(page.locator("#chart-daily")).to_contain_text("23 Nov")

    expect(page.locator("#export-training")).to_be_visible()
    assert errors == []
    assert all(url.startswith(live_server.url) for url in requested), requested
