"""Budgets in real Chromium: an owner adds a budget from the agent page's empty state, edits
and disables it (htmx swaps the panel), and finance sets a department budget and a team's."""

from __future__ import annotations

from typing import Any

import pytest

from apps.runtime import services
from apps.runtime.models import Budget

from ..factories import PASSWORD, make_agent
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_adds_edits_and_disables_a_budget_from_the_agent_page(
    org: Any, new_page: Any, shoot: Any
) -> None:
    agent = make_agent(org.claims, org.owner, "claims-bot", name="Claims bot")
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, "alice", PASSWORD)
    page.goto(agent.get_absolute_url())
    panel = page.locator("#budgets")
    assert panel.get_by_text("No budgets: nothing limits this agent").is_visible()
    panel.scroll_into_view_if_needed()
    shoot(page, "budgets-agent-empty", full_page=False)

    panel.get_by_role("link", name="Add its first budget").click()
    assert page.title().startswith("New budget · Claims bot")
    page.get_by_label("Name", exact=True).fill("Tokens per run")
    page.get_by_label("Kind", exact=True).select_option("tokens")
    page.get_by_label("Scope", exact=True).select_option("run")
    page.get_by_label("Limit", exact=True).fill("2.5")
    page.get_by_label("At the limit", exact=True).select_option("degrade")
    page.get_by_role("button", name="Create budget").click()
    assert page.get_by_role("alert").get_by_text("whole number").is_visible()
    assert page.get_by_role("alert").get_by_text("Name the cheaper model").is_visible()
    shoot(page, "budgets-form-errors")

    page.get_by_label("Limit", exact=True).fill("50000")
    page.get_by_label("Degrade to model").fill("gpt-4.1-mini")
    page.get_by_label("Degrade to model").press("Enter")  # submit by keyboard
    page.wait_for_url(f"**{agent.get_absolute_url()}#budgets")
    assert page.get_by_text("is in force from the next decision").is_visible()
    assert panel.get_by_text("Tokens per run").is_visible()
    assert panel.get_by_text("gpt-4.1-mini").is_visible()
    budget = Budget.objects.get()
    assert (budget.limit, budget.edge) == (50000, "degrade")

    panel.get_by_role("link", name="Edit Tokens per run").click()
    assert page.title().startswith("Edit budget · Tokens per run")
    page.get_by_label("Limit", exact=True).fill("60000")
    page.get_by_role("button", name="Save budget").click()
    page.wait_for_url(f"**{agent.get_absolute_url()}#budgets")
    assert panel.get_by_text("Limit 60000").is_visible()

    panel.get_by_role("button", name="Disable Tokens per run").click()  # an htmx swap
    page.locator("#budgets .badge--disabled").wait_for()
    assert page.locator("#budgets").get_by_text("no longer check it").is_visible()
    budget.refresh_from_db()
    assert not budget.enabled
    page.locator("#budgets").scroll_into_view_if_needed()
    shoot(page, "budgets-agent-panel", full_page=False)


def test_finance_sets_a_department_budget(org: Any, new_page: Any, shoot: Any) -> None:
    make_agent(org.claims, org.owner, "claims-bot")
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Budgets").click()
    assert page.title().startswith("Department budgets")
    assert page.get_by_role("heading", name="No department budgets yet").is_visible()
    shoot(page, "budgets-departments-empty")
    page.get_by_label("Department", exact=True).select_option("claims")
    page.get_by_label("Name", exact=True).fill("Claims monthly spend")
    page.get_by_label("Kind", exact=True).select_option("spend")
    page.get_by_label("Limit", exact=True).fill("250")
    page.get_by_label("At the limit", exact=True).select_option("ask")
    page.get_by_role("button", name="Create budget").click()
    page.wait_for_url("**/department-budgets/#department-claims")
    section = page.locator("#department-claims")
    assert section.get_by_text("Claims monthly spend").is_visible()
    assert section.get_by_text("0 used of 250").is_visible()
    shoot(page, "budgets-departments")
    assert Budget.objects.get().department == org.claims


def test_finance_sets_a_team_budget_under_its_department(
    org: Any, new_page: Any, shoot: Any
) -> None:
    make_agent(org.claims, org.owner, "claims-bot", team=org.claims_ops)
    services.budget_create(
        actor=org.admin, department=org.claims, name="Claims monthly spend", kind="spend",
        scope="department_month", limit=2500,
    )  # fmt: skip
    page = new_page()
    log_in(page, "fiona", PASSWORD)
    page.goto("/department-budgets/")
    page.get_by_label("Department", exact=True).select_option("claims")
    page.get_by_label("Team (optional)", exact=True).select_option(label="Claims / Claims Ops")
    page.get_by_label("Name", exact=True).fill("Claims Ops tokens")
    page.get_by_label("Kind", exact=True).select_option("tokens")
    page.get_by_label("Limit", exact=True).fill("900000")
    page.get_by_label("At the limit", exact=True).select_option("degrade")
    page.get_by_label("Degrade to model").fill("gpt-4.1-mini")
    page.get_by_role("button", name="Create budget").click()
    page.wait_for_url("**/department-budgets/#team-claims-ops")
    assert page.get_by_text("is in force from the next decision").is_visible()
    section = page.locator("#department-claims")
    team = section.get_by_role("list", name="Team Claims Ops")
    assert section.get_by_role("heading", name="Team Claims Ops").is_visible()
    assert team.get_by_text("Claims Ops tokens").is_visible()
    assert team.get_by_text("0 used of 900000").is_visible()
    assert section.get_by_text("Claims monthly spend").is_visible()
    budget = Budget.objects.get(name="Claims Ops tokens")
    assert (budget.scope, budget.team, budget.department) == ("team_month", org.claims_ops, None)
    shoot(page, "budgets-departments-team")
