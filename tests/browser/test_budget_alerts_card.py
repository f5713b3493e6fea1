"""The budget alerts card on /costs/ in real Chromium: finance sees two alerts of the claims
budget (80 % told by email and a webhook that failed, 50 % told with it), and a department
with no alert shows the empty state with its next step."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.approvals import channel_services
from apps.approvals.notify import RetryableDeliveryError
from apps.costs import tasks
from apps.costs.alerts import budget_alerts_check
from apps.costs.models import BudgetAlertNotice
from apps.costs.rollups import forget_month_spend
from apps.runtime import services as runtime

from ..approvals.receiver import serve_receiver
from ..costs.spend import spender
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver() -> Any:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def alerted(org: Any, receiver: Any) -> Any:
    """The claims budget at 85 % of $10 in one jump (50 % and 80 % recorded, 80 % told):
    finance's email sent, the claims webhook down (retrying)."""
    org.finance.email = "fiona@example.com"
    org.finance.save(update_fields=["email"])
    channel_services.channel_create(
        actor=org.admin, name="Claims spend hook", kind="webhook", target=receiver.url("/hook"),
        secret="budget-hook-secret-0123456789", department=org.claims,
    )  # fmt: skip
    runtime.budget_create(
        actor=org.admin, name="Claims AI spend", kind="spend", scope="department_month",
        department=org.claims, limit=Decimal("10"),
    )  # fmt: skip
    claims = spender(org, "claims-triage", org.claims)
    claims.call(timezone.now(), tokens=(3_400_000, 0))  # $8.50
    forget_month_spend()
    budget_alerts_check()  # committed: its notices are planned and queued
    receiver.status = 503
    for notice in BudgetAlertNotice.objects.all():
        with contextlib.suppress(RetryableDeliveryError):  # the webhook: retried later
            tasks.budget_alert_notify(notice.pk)
    return org


def test_finance_sees_the_alerts_card_with_whom_each_alert_told(
    alerted: Any, new_page: Any, shoot: Any, screenshot_dir: Path
) -> None:
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.goto("/costs/")

    card = page.get_by_role("region", name="Budget alerts")
    card.wait_for()
    rows = card.locator("tbody tr")
    assert rows.count() == 2
    eighty, fifty = rows.nth(0), rows.nth(1)
    assert eighty.locator(".badge").first.inner_text() == "80%"
    assert "Claims AI spend" in eighty.inner_text() and "Claims" in eighty.inner_text()
    assert "$8.50" in eighty.inner_text() and "85%" in eighty.inner_text()
    told = eighty.locator("td").last.inner_text()
    assert "fiona@example.com" in told and "Sent" in told
    assert "Claims spend hook" in told and "Failed (retrying)" in told and "HTTP 503" in told
    assert fifty.locator(".badge").first.inner_text() == "50%"
    assert "Told with the 80% alert" in fifty.inner_text()
    card.scroll_into_view_if_needed()
    shoot(page, "costs-budget-alerts")
    card.screenshot(path=str(screenshot_dir / "costs-budget-alerts-card.png"))


def test_the_card_has_an_empty_state_that_says_what_to_do(
    org: Any, new_page: Any, screenshot_dir: Path
) -> None:
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.goto("/costs/")

    card = page.get_by_role("region", name="Budget alerts")
    assert "No budget alert yet." in card.inner_text()
    link = card.get_by_role("link", name="Set a monthly budget")
    assert link.get_attribute("href") == reverse("runtime:department-budgets")
    card.screenshot(path=str(screenshot_dir / "costs-budget-alerts-empty.png"))
