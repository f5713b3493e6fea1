"""The finance console in real Chromium: a finance user opens the dashboard, switches
department and period, drills into an agent and one of its runs, and exports CSV; the CSV
matches the database. Empty states and a bad range are looked at too."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.costs.models import CostDaily
from apps.costs.rollups import finished_runs_count
from apps.runtime import services as runtime
from apps.runtime.models import Budget
from apps.traces.models import Span

from ..costs.spend import spender
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NOW = timezone.now().replace(hour=11, minute=0, second=0, microsecond=0)


@pytest.fixture
def spend(org: Any) -> None:
    claims = spender(org, "claims-triage", org.claims, team=org.claims_ops)
    intake = spender(org, "claims-intake", org.claims)
    payer = spender(org, "refund-payer", org.payments)
    for days_ago in range(75):
        when = NOW - timedelta(days=days_ago)
        claims.call(when, tokens=(800_000 + 10_000 * (days_ago % 7), 20_000))
        intake.call(when, model="claude-sonnet-4-5", tokens=(200_000, 10_000))
        payer.call(when, model="gpt-4o-mini", tokens=(2_000_000, 100_000))
    claims.call(NOW - timedelta(days=4), tokens=(30_000_000, 0))  # the runaway day
    payer.call(NOW - timedelta(days=2), model="in-house-llm-7", tokens=(5_000, 500))  # unpriced
    for outcome in ("approved", "rejected", "approved"):
        run = claims.run(f"Claim {outcome}")
        claims.call(NOW, run=run, tokens=(50_000, 2_000))
        runtime.run_finish(run=run, state="finished", outcome=outcome)
    finished_runs_count(now=timezone.now() + timedelta(seconds=1))
    Budget.objects.create(
        name="Claims AI spend", kind="spend", scope="department_month", department=org.claims,
        limit=Decimal("120"),
    )  # fmt: skip


def wait_for_charts(page: Any) -> None:
    page.locator(".chart .main-svg").first.wait_for()


def download(page: Any, link: Any) -> list[dict[str, str]]:
    with page.expect_download() as info:
        link.click()
    text = Path(info.value.path()).read_text()
    return list(csv.DictReader(io.StringIO(text)))


def test_finance_switches_department_and_period_drills_down_and_exports(
    org: Any, spend: None, new_page: Any, shoot: Any
) -> None:
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.goto("/costs/")
    wait_for_charts(page)
    assert page.title().startswith("Costs")
    assert "charged" in page.locator(".messages .warning").inner_text()  # the unpriced warning
    shoot(page, "costs-dashboard")

    filters = page.get_by_role("search", name="Filter costs")
    filters.get_by_label("Department").select_option(label="Claims")
    filters.get_by_label("Period").select_option(label="Last 90 days")
    filters.get_by_role("button", name="Show").click()
    page.get_by_role("heading", name="Costs: Claims").wait_for()
    wait_for_charts(page)
    assert page.locator("#over-time .chart .scatterlayer .trace").count() >= 2  # spend + anomaly
    shoot(page, "costs-claims-90-days")

    rows = download(page, page.locator("#over-time").get_by_role("link", name="CSV"))
    claims_days = {r["Day"]: Decimal(r["Cost (USD)"]) for r in rows if r["Department"] == "Claims"}
    assert len(claims_days) == 90
    in_db = {
        row["day"].isoformat(): row["cost"]
        for row in CostDaily.objects.filter(department_id=org.claims.pk)
        .values("day")
        .annotate(cost=Sum("cost_usd"))
    }
    for day, cost in claims_days.items():
        exact = in_db.get(day) or Decimal(0)
        assert cost == exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), day
    raw = Span.objects.filter(agent__department=org.claims).aggregate(c=Sum("cost_usd"))["c"]
    assert abs(sum(claims_days.values()) - raw) < Decimal("0.01") * len(claims_days)
    anomalies = [r["Day"] for r in rows if r["Anomaly"] == "yes"]
    assert (NOW - timedelta(days=4)).date().isoformat() in anomalies

    top = page.locator("#top-agents")
    top.get_by_text("Table view").click()
    top.get_by_role("link", name="Claims Triage").click()
    page.get_by_role("heading", name="Claims Triage: costs").wait_for()
    wait_for_charts(page)
    shoot(page, "costs-agent")
    page.locator("main table a").first.click()  # the newest run
    page.wait_for_url("**/runs/**")
    assert "Claim" in page.content()


def test_empty_states_and_a_bad_range_read_clearly(org: Any, new_page: Any, shoot: Any) -> None:
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.goto("/costs/")
    page.get_by_text("No spend in this period.").first.wait_for()
    page.get_by_text("No monthly spend budget for these departments").wait_for()
    shoot(page, "costs-empty")
    filters = page.get_by_role("search", name="Filter costs")
    filters.get_by_label("Period").select_option(label="Custom range")
    filters.get_by_label("From").fill("2026-11-30")
    filters.get_by_label("To").fill("2026-11-01")
    filters.get_by_role("button", name="Show").click()
    page.get_by_text("The range starts after it ends: swap the days.").wait_for()
    shoot(page, "costs-bad-range")
