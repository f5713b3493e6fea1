"""Monthly department and team spend budgets are held to what the cost rollups record, the
number finance sees: once spent, the hard limit refuses new spend in the runtime, and steps
that spend nothing go on."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from apps.costs.dashboard import department_month_total
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, budget_used, decide

from .spend import spender

pytestmark = pytest.mark.django_db

NOW = timezone.now()
HALF_A_DOLLAR = DecisionRequest(
    action="model.call", model="gpt-4o", estimated_input_tokens=200_000
)  # $0.50 at gpt-4o's $2.50 per million input tokens


def month_budget(org, limit: str, *, edge: str = "stop", **more):
    return runtime.budget_create(
        actor=org.admin, name="AI spend", kind="spend",
        scope="team_month" if "team" in more else "department_month",
        limit=Decimal(limit), edge=edge, **more,
    )  # fmt: skip


def test_a_department_budget_refuses_new_spend_once_the_month_has_spent_it(org):
    bot = spender(org, "claims-bot", org.claims)
    budget = month_budget(org, "5", department=org.claims)
    bot.call(NOW, tokens=(1_600_000, 0))  # $4.00
    run = bot.run()
    assert decide(run=run, request=HALF_A_DOLLAR).disposition == "allow"  # 4.00 + 0.50 <= 5
    bot.call(NOW, tokens=(600_000, 0))  # $1.50 more: $5.50 spent
    refused = decide(run=run, request=HALF_A_DOLLAR)
    assert refused.disposition == "deny" and refused.reasons == ["budget_exhausted"]
    assert "$5.50 of $5.00 spent this month by Claims" in refused.reasoning
    spent = department_month_total(department_id=org.claims.pk, month=NOW.date())
    assert budget_used([budget]) == {budget.pk: float(spent)}  # the runtime's number is finance's
    free = DecisionRequest(action="model.call", model="gpt-4o")  # estimates no spend
    assert decide(run=run, request=free).disposition == "allow"


def test_a_team_budget_counts_its_teams_agents_only(org):
    ops = spender(org, "claims-ops-bot", org.claims, team=org.claims_ops)
    other = spender(org, "claims-other-bot", org.claims)
    month_budget(org, "1", team=org.claims_ops)
    other.call(NOW, tokens=(4_000_000, 0))  # $10 outside the team
    assert decide(run=ops.run(), request=HALF_A_DOLLAR).disposition == "allow"
    ops.call(NOW, tokens=(400_000, 0))  # $1.00: the team's month is spent
    assert decide(run=ops.run(), request=HALF_A_DOLLAR).reasons == ["budget_exhausted"]
    assert decide(run=other.run(), request=HALF_A_DOLLAR).disposition == "allow"


@pytest.mark.parametrize(
    "edge, disposition, reasons",
    [
        ("continue", "allow", ["allowed", "budget_over_continue"]),
        ("ask", "ask", ["budget_ask"]),
    ],
)
def test_the_edge_of_a_spent_month_is_the_budgets(org, edge, disposition, reasons):
    bot = spender(org, "claims-bot", org.claims)
    month_budget(org, "1", edge=edge, department=org.claims)
    bot.call(NOW, tokens=(400_000, 0))  # $1.00
    decision = decide(run=bot.run(), request=HALF_A_DOLLAR)
    assert (decision.disposition, decision.reasons) == (disposition, reasons)


def test_a_spent_month_degrades_to_the_cheaper_model_where_the_budget_names_one(org):
    bot = spender(org, "claims-bot", org.claims)
    month_budget(org, "1", edge="degrade", department=org.claims, degrade_to_model="gpt-4o-mini")
    bot.call(NOW, tokens=(400_000, 0))
    decision = decide(run=bot.run(), request=HALF_A_DOLLAR)
    assert decision.disposition == "modify" and decision.modified_model == "gpt-4o-mini"
