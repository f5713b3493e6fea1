"""The incident report in real Chromium: one click from a run page opens it, with the timeline,
the decisions and a verified chain proof; a tampered decision makes the proof fail visibly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.runtime.sealing import SEAL_LAG, decisions_seal

from ..factories import PASSWORD
from ..traces.runs import a_run_with_a_trace, decide, make_runner, start_run
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def incident_run(org: Any) -> Any:
    runner = make_runner(org.owner, org.claims, "claims-triage")
    run = start_run(
        runner, "Refund order o-7 after checking the customer",
        state="failed", ended_after=timedelta(milliseconds=2500),
    )  # fmt: skip
    a_run_with_a_trace(runner, run)
    decide(run, at=run.started_at + timedelta(milliseconds=900))
    decide(run, "deny", at=run.started_at + timedelta(milliseconds=1400), target="payment-refund")
    decisions_seal(now=timezone.now() + SEAL_LAG + timedelta(seconds=5))
    return run


def test_the_incident_report_opens_from_the_run_page_with_its_proof(
    org: Any, incident_run: Any, new_page: Any, shoot: Any
) -> None:
    page = new_page()
    log_in(page, "alice", PASSWORD)
    page.goto(f"/runs/{incident_run.pk}/")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Incident report").click()
    report = opened.value
    report.wait_for_load_state()
    assert report.get_by_text("Chain proof verified").is_visible()
    report.get_by_role("heading", name="Decisions (2)").wait_for()
    assert report.locator("td.deny").count() == 1
    assert report.get_by_text("runtime.decisions.sealed").is_visible()
    assert report.get_by_text("Not sealed yet").count() == 0  # both decisions are in the block
    shoot(report, "incident-report", full_page=True)


def test_a_tampered_decision_shows_the_proof_failed(
    org: Any, incident_run: Any, new_page: Any, shoot: Any
) -> None:
    first = incident_run.decisions.order_by("id").first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE runtime_decision SET reasoning = 'edited' WHERE id = %s", [first.pk])
    page = new_page()
    log_in(page, "alice", PASSWORD)
    page.goto(f"/runs/{incident_run.pk}/incident-report/")
    assert page.get_by_text("Chain proof FAILED").is_visible()
    assert page.get_by_text("does not match its decisions").is_visible()
    shoot(page, "incident-report-tampered")
