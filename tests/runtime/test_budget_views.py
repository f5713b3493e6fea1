"""The console's budgets: the agent page's panel, the budget form, and department budgets."""

from __future__ import annotations

import pytest

from apps.runtime import services
from apps.runtime.models import Budget

from ..clients import console_client
from ..factories import make_agent


@pytest.fixture
def agent(org):
    return make_agent(org.claims, org.owner, "claims-bot")


def _budget(org, agent, **extra):
    fields = {"name": "Tokens per run", "kind": "tokens", "scope": "run", "limit": 500}
    return services.budget_create(actor=org.owner, agent=agent, **{**fields, **extra})


def test_the_empty_panel_tells_the_owner_how_to_add_one(org, agent):
    page = console_client(org.owner).get(agent.get_absolute_url()).content.decode()
    assert "No budgets: nothing limits this agent" in page
    assert "Add its first budget" in page and "/agents/claims-bot/budgets/new/" in page
    other = console_client(org.approver).get(agent.get_absolute_url()).content.decode()
    assert "Its owner or an admin can add one." in other and "budgets/new/" not in other


def test_owner_creates_a_budget_through_the_form(org, agent):
    client = console_client(org.owner)
    form = client.get("/agents/claims-bot/budgets/new/")
    assert form.status_code == 200 and b"<title>New budget" in form.content
    assert b"department_month" not in form.content
    response = client.post(
        "/agents/claims-bot/budgets/new/",
        {"name": "Daily calls", "kind": "tool_calls", "scope": "agent_day", "limit": "20",
         "edge": "ask", "degrade_to_model": ""},
    )  # fmt: skip
    assert response.status_code == 302 and response["Location"].endswith("#budgets")
    budget = Budget.objects.get()
    assert (budget.name, budget.limit, budget.edge, budget.agent) == (
        "Daily calls",
        20,
        "ask",
        agent,
    )
    page = client.get(agent.get_absolute_url()).content.decode()
    assert "Daily calls" in page and "0 used of 20" in page


def test_the_form_shows_the_services_reasons(org, agent):
    response = console_client(org.owner).post(
        "/agents/claims-bot/budgets/new/",
        {"name": "Calls", "kind": "tool_calls", "scope": "run", "limit": "2.5", "edge": "degrade"},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "whole number" in page and "Degrade swaps a model call" in page
    assert not Budget.objects.exists()


def test_edit_disable_enable_and_delete(org, agent):
    budget = _budget(org, agent)
    client = console_client(org.owner)
    edit = client.get(f"/budgets/{budget.slug}/edit/")
    assert edit.status_code == 200 and b"Fixed when the budget was created" in edit.content
    saved = client.post(
        f"/budgets/{budget.slug}/edit/",
        {"name": "Tokens", "limit": "900", "edge": "stop", "degrade_to_model": "", "enabled": "on",
         "kind": "spend"},
    )  # fmt: skip
    assert saved.status_code == 302
    budget.refresh_from_db()
    assert (budget.name, budget.limit, budget.kind) == ("Tokens", 900, "tokens")  # kind is fixed
    off = client.post(f"/budgets/{budget.slug}/enabled/", {"enabled": "false"})
    assert off.status_code == 302
    budget.refresh_from_db()
    assert not budget.enabled
    fragment = client.post(
        f"/budgets/{budget.slug}/enabled/",
        {"enabled": "true", "panel_agent": "claims-bot"},
        HTTP_HX_REQUEST="true",
    )
    assert fragment.status_code == 200
    assert b'id="budgets"' in fragment.content and b"<html" not in fragment.content
    assert b"decisions check it again" in fragment.content
    client.post(f"/budgets/{budget.slug}/delete/")
    assert not Budget.objects.exists()


def test_outsiders_get_404_and_non_owners_403(org, agent):
    budget = _budget(org, agent)
    for user in (org.outsider, org.other_owner):
        client = console_client(user)
        assert client.get("/agents/claims-bot/budgets/new/").status_code == 404
        assert client.get(f"/budgets/{budget.slug}/edit/").status_code == 404
        assert client.post(f"/budgets/{budget.slug}/delete/").status_code == 404
        assert (
            client.post(f"/budgets/{budget.slug}/enabled/", {"enabled": "false"}).status_code == 404
        )
    approver = console_client(org.approver)
    assert approver.get("/agents/claims-bot/budgets/new/").status_code == 403
    assert approver.get(f"/budgets/{budget.slug}/edit/").status_code == 403
    approver.post(f"/budgets/{budget.slug}/delete/")
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_department_budgets_page_empty_state_and_create(org, agent):
    finance = console_client(org.finance)
    page = finance.get("/department-budgets/")
    assert page.status_code == 200 and b"<title>Department budgets" in page.content
    assert (
        b"No department budgets yet" in page.content and b"Set a department budget" in page.content
    )
    created = finance.post(
        "/department-budgets/",
        {"department": "claims", "name": "Claims spend", "kind": "spend", "limit": "250",
         "edge": "degrade", "degrade_to_model": "gpt-4.1-mini", "scope": "department_month"},
    )  # fmt: skip
    assert created.status_code == 302, created.content.decode()
    assert created["Location"].endswith("#department-claims")
    budget = Budget.objects.get()
    assert budget.department == org.claims and budget.scope == "department_month"
    owner_view = console_client(org.owner).get("/department-budgets/").content.decode()
    assert "Claims spend" in owner_view and "Set a department budget" not in owner_view
    assert "0 used of 250" in owner_view
    assert console_client(org.owner).post("/department-budgets/", {}).status_code == 403
    agent_page = console_client(org.owner).get(agent.get_absolute_url()).content.decode()
    assert "Claims spend" in agent_page and "department budget" in agent_page
    assert f"/budgets/{budget.slug}/edit/" not in agent_page  # the owner cannot change it
    other = console_client(org.other_owner).get("/department-budgets/").content.decode()
    assert "Claims spend" not in other
    assert console_client(org.outsider).get("/department-budgets/").status_code == 403


def test_the_budgets_card_alone_is_served_for_the_page_to_poll(org, agent):
    _budget(org, agent)
    panel = console_client(org.owner).get("/agents/claims-bot/budgets/")
    assert panel.status_code == 200
    body = panel.content.decode()
    assert body.lstrip().startswith("<section") and "Tokens per run" in body
    assert 'hx-trigger="every' in body  # it keeps polling itself after each swap
    assert console_client(org.outsider).get("/agents/claims-bot/budgets/").status_code == 404
