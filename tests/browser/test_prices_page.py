"""The model prices page in real Chromium: the empty state, a form error, a saved price."""

from __future__ import annotations

from typing import Any

import pytest

from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_adds_a_negotiated_price(org: Any, new_page: Any, shoot: Any) -> None:
    admin = new_page()
    log_in(admin, "ada", PASSWORD)
    admin.goto("/costs/prices/")
    admin.get_by_text("No negotiated price.").wait_for()
    admin.get_by_label("Model").fill("gpt-4o")
    admin.get_by_label("Input", exact=True).fill("-2")
    admin.get_by_label("Output").fill("8")
    admin.get_by_role("button", name="Save price").click()
    admin.get_by_text("Ensure this value is greater than or equal to 0.", exact=True).wait_for()
    shoot(admin, "prices-error")
    admin.get_by_label("Input", exact=True).fill("2")
    admin.get_by_label("Provider").fill("openai")
    admin.get_by_label("Note").fill("Enterprise agreement 2026")
    admin.get_by_role("button", name="Save price").click()
    admin.get_by_text("saved; calls from then on are priced with it").wait_for()
    row = admin.locator("section[aria-labelledby=prices-title] tbody tr")
    assert row.count() == 1 and "$2" in row.inner_text() and "openai" in row.inner_text()
    shoot(admin, "prices-list")
