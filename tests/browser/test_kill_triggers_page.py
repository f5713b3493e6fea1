"""The automatic triggers' page in real Chromium: an admin finds it from the kill switch, reads
the empty state, is told what to fix in a bad rule, adds a good one, sees it fire and follows
it to the kill it engaged, switches it off and deletes it after confirming."""

from __future__ import annotations

from typing import Any

import pytest

from apps.killswitch.models import KillSwitch, KillTrigger
from apps.killswitch.triggers import triggers_evaluate
from apps.runtime.decisions import DecisionRequest, decide

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_adds_a_rule_sees_it_fire_and_deletes_it(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    admin = new_page()
    log_in(admin, "ada", PASSWORD)
    admin.goto("/kill/")
    admin.get_by_role("link", name="Automatic triggers").click()
    assert admin.title() == "Automatic triggers · Kill switch · Tether"
    admin.get_by_text("No automatic triggers yet.").wait_for()
    shoot(admin, "kill-triggers-empty")

    admin.get_by_label("Name", exact=True).fill("Loop guard")
    admin.get_by_label("Threshold").fill("0")
    admin.get_by_label("Within").fill("5")
    admin.get_by_label("Unit").select_option("s")
    admin.get_by_role("button", name="Add rule").click()
    admin.get_by_text("Please correct the marked fields").wait_for()
    assert "From 10 seconds to 1 day." in admin.locator(".field--window .errors").inner_text()
    assert admin.locator(".field--threshold .errors").count() == 1
    shoot(admin, "kill-triggers-form-errors")
    assert not KillTrigger.objects.exists()

    admin.get_by_label("Threshold").fill("2")
    admin.get_by_label("Within").fill("5")
    admin.get_by_label("Unit").select_option("min")
    admin.get_by_label("Then").select_option("kill_run")
    admin.get_by_role("button", name="Add rule").click()
    admin.get_by_text("Added “Loop guard”").wait_for()
    row = admin.locator("tr", has_text="Loop guard")
    assert "2 or more within 5 min" in row.inner_text() and "Never" in row.inner_text()

    # The agent loops on a tool nobody registered; the beat's next evaluation stops the run.
    request = DecisionRequest(action="tool.invoke", tool="no-such-tool", tool_action="read")
    for _ in range(2):
        assert decide(run=gated.run, request=request).disposition == "deny"
    assert len(triggers_evaluate()) == 1
    kill = KillSwitch.objects.get()

    admin.reload()
    row = admin.locator("tr", has_text="Loop guard")
    assert "1 kill engaged, 1 still in force" in row.inner_text()
    shoot(admin, "kill-triggers-list")
    row.get_by_role("link", name=f"Kill #{kill.pk}").click()
    admin.locator(
        "#why-title + p", has_text="Automatic: rule 'Loop guard' — 2 denials in 5 min"
    ).wait_for()
    shoot(admin, "kill-triggers-kill-detail")

    admin.goto("/kill/triggers/")
    admin.get_by_role("button", name="Switch off Loop guard").click()
    admin.get_by_text("is off: it fires no more").wait_for()
    admin.get_by_role("link", name="Delete Loop guard").click()
    admin.get_by_text("What deleting does").wait_for()
    shoot(admin, "kill-triggers-delete")
    admin.get_by_role("button", name="Delete rule").click()
    admin.get_by_text("Deleted “Loop guard”").wait_for()
    assert not KillTrigger.objects.exists()
    kill.refresh_from_db()
    assert kill.engaged  # the kill it engaged stays


def test_an_approver_reads_the_rules_without_the_admin_controls(
    org: Any,
    new_page: Any,
    shoot: Any,
) -> None:
    KillTrigger.objects.create(name="Budget stop", kind="budget_breach", response="kill_agent")
    page = new_page()
    log_in(page, "carol", PASSWORD)
    page.goto("/kill/triggers/")
    page.get_by_text("Budget stop").wait_for()
    assert page.get_by_role("button", name="Add rule").count() == 0
    assert page.get_by_role("link", name="Edit Budget stop").count() == 0
    shoot(page, "kill-triggers-read-only")
