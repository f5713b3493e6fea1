"""An owner registers, grants, finds, edits and diffs an agent in real Chromium; an outsider
then gets a 404 for it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from apps.registry.constants import RiskClass
from apps.registry.models import Agent

from ..factories import PASSWORD, make_tool
from .helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_owner_registers_grants_finds_edits_and_diffs_an_agent_and_outsider_gets_404(
    org: Any, new_page: Any, shoot: Any
) -> None:
    make_tool(
        "crm-lookup",
        name="CRM lookup",
        risk_class=RiskClass.HIGH,
        actions=["read", "update", "close"],
    )
    page = new_page()
    page.goto("/accounts/login/")
    shoot(page, "login")
    log_in(page, "alice", PASSWORD)
    assert page.title() == "Overview · Tether"
    assert page.get_by_role("heading", name="No agents registered yet").is_visible()
    shoot(page, "home-empty")

    # Register, first with a mistake the form must explain.
    page.get_by_role("link", name="Register your first agent").first.click()
    assert page.title() == "Register an agent · Agents · Tether"
    page.fill("#id_name", "Claims triage")
    page.fill("#id_slug", "claims-triage")
    page.fill(
        "#id_mission", "Sort incoming claims by urgency and route them to the right adjuster."
    )
    page.select_option("#id_department", "claims")
    page.get_by_label("Development (dev)").check()
    page.get_by_label("Production (prod)").check()
    page.fill("#id_model_family", "gpt-4.1")
    page.fill("#id_default_model", "gpt-4.1-mini")
    page.fill("#id_providers", "openai")
    page.fill("#id_tags", "claims, triage")
    page.fill("#id_shutdown_action", "Pause the intake queue; claims wait for a person.")
    page.fill("#id_rollback_action", "Re-route affected claims by hand from the audit trail.")
    page.fill("#id_instructions", "You triage insurance claims.\nNever promise a payout.")
    page.fill("#id_parameters", '{"temperature": 0.2,}')
    page.get_by_role("button", name="Register agent").click()
    assert page.get_by_role("alert").get_by_text("Parameters").is_visible()
    assert "Not valid JSON" in page.locator("#id_parameters_error").inner_text()
    shoot(page, "agent-form-errors")
    page.fill("#id_parameters", '{"temperature": 0.2}')
    page.get_by_role("button", name="Register agent").click()
    page.wait_for_url("**/agents/claims-triage/")
    assert page.get_by_role("heading", name="Claims triage", exact=True).is_visible()

    # Grant a tool: the actions come from the chosen tool (htmx), the environment is checked.
    page.get_by_role("link", name="Grant a tool").click()
    page.select_option("#id_tool", "crm-lookup")
    page.locator("#grant-actions input[value=close]").wait_for()
    page.locator("#grant-actions input[value=read]").check()
    page.get_by_label("Canary (canary)").check()
    page.fill("#id_constraints", '{"max_records": 50}')
    page.get_by_role("button", name="Grant tool").click()
    assert page.get_by_text("may not run in canary").first.is_visible()
    shoot(page, "grant-form-errors")
    page.get_by_label("Canary (canary)").uncheck()
    page.get_by_label("Production (prod)").uncheck()
    page.get_by_role("button", name="Grant tool").click()
    page.wait_for_url("**/agents/claims-triage/")
    assert page.locator("#grants-title").is_visible()
    assert page.get_by_role("link", name="CRM lookup", exact=True).is_visible()
    shoot(page, "agent-detail-owner")

    # Find it in the list by searching (the table refreshes over htmx).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    with page.expect_response(lambda r: "q=triage" in r.url):
        page.fill("#id_q", "triage")
    page.get_by_role("link", name="Claims triage").wait_for()
    assert "q=triage" in page.url
    shoot(page, "agent-list-search")
    page.get_by_role("link", name="Claims triage").click()
    page.wait_for_url("**/agents/claims-triage/")

    # Edit the instructions; a new version appears in the history, with its diff.
    page.get_by_role("link", name="Edit agent").click()
    page.fill(
        "#id_instructions",
        "You triage insurance claims.\nNever promise a payout.\nEscalate suspected fraud to a person.",
    )
    page.fill("#id_change_summary", "Escalate suspected fraud")
    shoot(page, "agent-edit")
    page.get_by_role("button", name="Save changes").click()
    page.wait_for_url("**/agents/claims-triage/")
    page.get_by_role("link", name=re.compile(r"History")).first.click()
    assert page.title() == "History · Claims triage · Tether"
    assert page.get_by_role("cell", name="Escalate suspected fraud").is_visible()
    shoot(page, "history")
    page.get_by_role("button", name="Compare selected versions").click()
    page.wait_for_url(re.compile(r".*/versions/diff/\?(b=3&a=2|a=2&b=3)$"))
    added = page.locator(".line--add")
    assert "Escalate suspected fraud to a person." in added.inner_text()
    shoot(page, "diff")
    assert Agent.objects.get(slug="claims-triage").versions.count() == 3

    # An outsider cannot see it.
    outsider = new_page()
    log_in(outsider, "oscar", PASSWORD)
    assert outsider.get_by_role("heading", name="You have no role in Tether yet").is_visible()
    shoot(outsider, "no-role")
    response = outsider.goto("/agents/claims-triage/")
    assert response is not None and response.status == 404
    assert outsider.title() == "Not found · Tether"
    assert "Claims triage" not in outsider.content()
    shoot(outsider, "outsider-404")
