"""Drift in real Chromium: the owner of a claims agent opens the drift alerts (empty, then one
alert), reads the alert's page (the chart against the baseline, the statistic in words, the
knowledge-base change named), rolls prod back in one click, sees v1 serving on the releases
page, compares the two versions, and pages through a long list of alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.drift.constants import Metric
from apps.drift.models import DriftAlert
from apps.registry.models import Deployment
from apps.runtime import services as runtime

from ..drift.runs import claims_approver, drift_after_change
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def claims(org: Any, settings: Any) -> Any:
    settings.DRIFT_BASELINE_RUNS = 300
    return claims_approver(org)


def test_an_owner_reads_a_drift_and_rolls_back(
    org: Any, claims: Any, new_page: Any, shoot: Any
) -> None:
    agent, credential = claims
    page = new_page()
    log_in(page, "alice", PASSWORD)
    page.goto("/drift/")
    assert "No live drift alerts." in page.get_by_role("main").inner_text()
    shoot(page, "drift-empty")

    drift_after_change(org, agent, credential, approved_per_20=14)
    alert = DriftAlert.objects.get(metric=Metric.OUTCOME)
    page.goto("/drift/")
    row = page.locator("tbody tr").first
    assert "Claims approver" in row.inner_text() and "85% → 70%" in row.inner_text()
    assert "kb-2026-01 → kb-2026-03" in row.inner_text()
    shoot(page, "drift-list")

    row.get_by_role("link", name="Claims approver").click()
    page.wait_for_url(f"**/drift/{alert.pk}/")
    page.locator(".chart .main-svg").first.wait_for()  # plotly drew the chart
    main = page.get_by_role("main").inner_text()
    assert "outcome “approved” 85% → 70% since" in main and "p < 0.001" in main
    assert "chi-square test" in main
    assert "v2: knowledge base kb-2026-01 → kb-2026-03" in main
    highlighted = page.locator("section[aria-labelledby=events-title] tr.row--highlight")
    assert "kb-2026-03" in highlighted.inner_text()
    shoot(page, "drift-alert")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back prod").click()
    page.wait_for_url(f"**/drift/{alert.pk}/")
    assert "new runs use v1 from now" in page.locator(".messages").inner_text()
    assert Deployment.objects.get(agent=agent, environment="prod").version.number == 1
    run, _ = runtime.run_start(credential=credential, task="Approve claim 99")
    assert run.version.number == 1

    page.get_by_role("link", name="releases").click()
    page.wait_for_url("**/agents/claims-approver/releases/")
    stages = page.locator(".path li")
    assert "prod" in stages.nth(1).inner_text().lower() and "v1" in stages.nth(1).inner_text()
    assert "prod rolled back from v2 to v1" in page.get_by_role("main").inner_text()
    shoot(page, "releases-agent")

    page.goto("/agents/claims-approver/versions/compare/?left=1&right=2&environment=prod&days=30")
    table = page.get_by_role("main").inner_text()
    assert "Outcome “approved”" in table and "85.0%" in table and "70.0%" in table
    assert page.locator("tr.row--highlight").count() >= 1
    shoot(page, "releases-compare")

    page.goto("/agents/claims-approver/versions/compare/?left=1&right=7&environment=prod")
    assert "has no v7" in page.get_by_role("main").inner_text()
    shoot(page, "releases-compare-error")

    page.goto("/agents/claims-approver/releases/suites/")
    assert "No evaluation suite yet" in page.get_by_role("main").inner_text()
    shoot(page, "releases-suites-empty")


def test_a_long_list_of_alerts_pages_by_fifty(
    org: Any, claims: Any, new_page: Any, shoot: Any
) -> None:
    agent, credential = claims
    drift_after_change(org, agent, credential, approved_per_20=14)
    alert = DriftAlert.objects.get(metric=Metric.OUTCOME)
    now = timezone.now()
    copies = []
    for n in range(64):
        copy = DriftAlert.objects.get(pk=alert.pk)
        copy.pk = None
        copy.status = "resolved"
        copy.last_seen_at = now - timedelta(hours=n + 1)
        copies.append(copy)
    DriftAlert.objects.bulk_create(copies)
    page = new_page()
    log_in(page, "alice", PASSWORD)
    page.goto("/drift/?status=all")
    assert page.locator("tbody tr").count() == 50
    assert "Page 1 of 2" in page.get_by_role("main").inner_text()
    shoot(page, "drift-list-long")
    page.get_by_role("link", name="Next →").click()
    assert page.locator("tbody tr").count() == 15
