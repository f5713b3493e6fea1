"""Budget services: who may set budgets, what a sound budget is, audit, and that decisions
see a write at once (the budget generation)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.audit.models import AuditEvent
from apps.common import generation
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.runtime import selectors, services
from apps.runtime.constants import BUDGET_GENERATION
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.generation import budget_cache_token, forget_budget_token
from apps.runtime.models import Budget

from ..factories import make_agent
from .conftest import start_run


def _tokens(actor, agent, **extra):
    fields = {"name": "Tokens per run", "kind": "tokens", "scope": "run", "limit": 50000}
    return services.budget_create(actor=actor, agent=agent, **{**fields, **extra})


def test_owner_creates_an_agent_budget_with_a_slug_and_an_audit_event(org):
    agent = make_agent(org.claims, org.owner, "claims-bot")
    budget = _tokens(org.owner, agent)
    assert budget.slug == "claims-bot-tokens-per-run"
    assert budget.limit == Decimal(50000) and budget.edge == "stop" and budget.enabled
    event = AuditEvent.objects.get(action="runtime.budget.created")
    assert event.target_repr == budget.slug
    assert event.after["agent"] == "claims-bot" and event.after["limit"] == "50000"
    assert _tokens(org.owner, agent).slug == "claims-bot-tokens-per-run-2"


def test_an_owner_cannot_budget_an_agent_they_do_not_own(org):
    colleagues = make_agent(org.claims, org.approver, "colleagues-bot")
    payments = make_agent(org.payments, org.other_owner, "payments-bot")
    for agent in (colleagues, payments):
        with pytest.raises(NotPermitted):
            _tokens(org.owner, agent)
    with pytest.raises(NotPermitted):
        _tokens(org.finance, payments)  # finance sets department budgets, not agents'
    assert _tokens(org.admin, payments).agent == payments


def test_department_budgets_are_for_admins_and_finance(org):
    fields = {"name": "Claims spend", "kind": "spend", "scope": "department_month", "limit": 250}
    for outsider in (org.owner, org.approver, org.auditor, org.outsider):
        with pytest.raises(NotPermitted):
            services.budget_create(actor=outsider, department=org.claims, **fields)
    budget = services.budget_create(actor=org.finance, department=org.claims, **fields)
    assert budget.slug == "claims-claims-spend" and budget.agent is None
    assert services.budget_create(actor=org.admin, department=org.payments, **fields)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"limit": 0}, "limit", "greater than 0"),
        ({"limit": -5}, "limit", "greater than 0"),
        ({"limit": 10**12}, "limit", "at most 1,000,000,000"),
        ({"limit": "1e999"}, "limit", "at most"),
        ({"limit": "NaN"}, "limit", "finite"),
        ({"limit": "ten"}, "limit", "as a number"),
        ({"limit": True}, "limit", "as a number"),
        ({"limit": "12.5"}, "limit", "whole number"),
        ({"limit": "0.00001"}, "limit", "4 decimal places"),
        ({"kind": "kilograms"}, "kind", "Choose one of"),
        ({"scope": "department_month"}, "department", "name it"),
        ({"edge": "degrade"}, "degrade_to_model", "Name the cheaper model"),
        ({"degrade_to_model": "gpt-4.1-mini"}, "degrade_to_model", "Only a budget with"),
        ({"kind": "tool_calls", "edge": "degrade", "degrade_to_model": "m"}, "edge", "tokens"),
        ({"edge": "degrade", "degrade_to_model": "gpt 4; drop"}, "degrade_to_model", "letters"),
        ({"kind": "wall_time", "scope": "agent_day"}, "scope", "per run"),
        ({"kind": "wall_time", "edge": "ask"}, "edge", "stop"),
    ],
)
def test_unsound_budgets_are_refused_field_by_field(org, changes, field, message):
    agent = make_agent(org.claims, org.owner)
    with pytest.raises(ApplicationError) as excinfo:
        _tokens(org.owner, agent, **changes)
    assert message in " ".join(excinfo.value.details[field])
    assert not Budget.objects.exists()


def test_a_department_budget_over_an_agent_is_refused(org):
    agent = make_agent(org.claims, org.owner)
    with pytest.raises(ApplicationError) as excinfo:
        services.budget_create(
            actor=org.admin, agent=agent, department=org.claims, name="x", kind="spend",
            scope="agent_month", limit=5,
        )  # fmt: skip
    assert "department" in excinfo.value.details


def test_spend_takes_cents_and_degrade_names_a_model(org):
    agent = make_agent(org.claims, org.owner)
    budget = services.budget_create(
        actor=org.owner, agent=agent, name="Spend", kind="spend", scope="agent_month",
        limit="12.3456", edge="degrade", degrade_to_model="gpt-4.1-mini",
    )  # fmt: skip
    assert budget.limit_text == "12.3456"


def test_update_changes_limit_and_edge_but_never_kind_or_owner(org):
    agent = make_agent(org.claims, org.owner)
    budget = _tokens(org.owner, agent)
    updated = services.budget_update(
        actor=org.owner, budget=budget,
        data={"limit": 100, "edge": "degrade", "degrade_to_model": "gpt-4.1-nano"},
    )  # fmt: skip
    assert (updated.limit, updated.edge, updated.degrade_to_model) == (
        100,
        "degrade",
        "gpt-4.1-nano",
    )
    event = AuditEvent.objects.get(action="runtime.budget.updated")
    assert event.before["limit"] == "50000" and event.after["limit"] == "100"
    again = services.budget_update(actor=org.owner, budget=updated, data={"edge": "stop"})
    assert again.degrade_to_model == ""  # leaving degrade drops the model
    for change in ({"kind": "spend"}, {"scope": "agent_day"}, {"agent": "other"}):
        with pytest.raises(ApplicationError, match="cannot change"):
            services.budget_update(actor=org.owner, budget=again, data=change)
    with pytest.raises(ApplicationError, match="Unknown"):
        services.budget_update(actor=org.owner, budget=again, data={"colour": "red"})
    with pytest.raises(NotPermitted):
        services.budget_update(actor=org.approver, budget=again, data={"limit": 5})


def test_an_update_that_changes_nothing_writes_no_event(org):
    budget = _tokens(org.owner, make_agent(org.claims, org.owner))
    services.budget_update(actor=org.owner, budget=budget, data={"limit": "50000.0"})
    assert not AuditEvent.objects.filter(action="runtime.budget.updated").exists()


def test_delete_is_refused_once_the_budget_charged_something(org, setup):
    spent = services.budget_create(
        actor=org.owner, agent=setup.agent, name="calls", kind="tool_calls", scope="run", limit=9
    )
    unused = _tokens(org.owner, setup.agent)
    run, _ = start_run(setup)
    decide(
        run=run,
        request=DecisionRequest(
            action="tool.invoke", tool="crm-lookup", tool_action="read",
            arguments={"customer_id": "c1"},
        ),
    )  # fmt: skip
    with pytest.raises(Conflict, match="disable it instead"):
        services.budget_delete(actor=org.owner, budget=spent)
    services.budget_set_enabled(actor=org.owner, budget=spent, enabled=False)
    services.budget_delete(actor=org.owner, budget=unused)
    assert list(Budget.objects.values_list("slug", "enabled")) == [(spent.slug, False)]
    assert AuditEvent.objects.filter(action="runtime.budget.deleted").count() == 1


def test_every_budget_write_bumps_the_budget_generation_on_commit(
    org, django_capture_on_commit_callbacks
):
    agent = make_agent(org.claims, org.owner)
    before = budget_cache_token()
    with django_capture_on_commit_callbacks(execute=True):
        budget = _tokens(org.owner, agent)
    forget_budget_token()
    middle = budget_cache_token()
    assert middle != before and middle[0] == generation.local(BUDGET_GENERATION)
    assert middle[1] is not None  # Redis holds the shared counter too
    with django_capture_on_commit_callbacks(execute=True):
        services.budget_set_enabled(actor=org.owner, budget=budget, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        services.budget_delete(actor=org.owner, budget=budget)
    forget_budget_token()
    assert budget_cache_token()[0] == middle[0] + 2


def test_selectors_scope_budgets_to_the_user(org):
    mine = _tokens(org.owner, make_agent(org.claims, org.owner, "mine"))
    theirs = _tokens(org.other_owner, make_agent(org.payments, org.other_owner, "theirs"))
    claims = services.budget_create(
        actor=org.admin, department=org.claims, name="Claims", kind="spend",
        scope="department_month", limit=10,
    )  # fmt: skip
    assert set(selectors.budget_list(user=org.owner)) == {mine, claims}
    assert set(selectors.budget_list(user=org.other_owner)) == {theirs}
    assert set(selectors.budget_list(user=org.finance)) == {mine, theirs, claims}
    assert not selectors.budget_list(user=org.outsider).exists()
    assert set(selectors.budget_list(user=org.owner, agent="mine")) == {mine, claims}
    assert not selectors.budget_list(user=org.owner, agent="theirs").exists()
    from django.http import Http404

    with pytest.raises(Http404):
        selectors.budget_get(user=org.outsider, slug=mine.slug)
    with pytest.raises(Http404):
        selectors.budget_get(user=org.owner, slug=theirs.slug)
