"""Spend budgets charge Tether's own prices, the ones finance sees: the estimate at decision
time, what was used once the agent reports it, and an unpriced model at the worst case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.costs.prices import model_cost
from apps.runtime.decisions import DecisionRequest, decide, usage_reconcile
from apps.runtime.models import Budget, BudgetLedgerEntry

from .conftest import start_run

pytestmark = pytest.mark.django_db


def model_call(model: str, tokens_in: int, tokens_out: int, **more) -> DecisionRequest:
    return DecisionRequest(
        action="model.call",
        model=model,
        estimated_input_tokens=tokens_in,
        estimated_output_tokens=tokens_out,
        **more,
    )


def spend_budget(setup, limit: str) -> Budget:
    return Budget.objects.create(
        name="spend", kind="spend", scope="run", agent=setup.agent, limit=Decimal(limit)
    )


def test_a_model_call_reserves_the_price_of_its_estimated_tokens(setup):
    spend_budget(setup, "1")
    run, _ = start_run(setup)
    decision = decide(run=run, request=model_call("gpt-4o", 100_000, 10_000))
    expected = model_cost(model="gpt-4o", input_tokens=100_000, output_tokens=10_000).usd
    assert expected == Decimal("0.35")
    assert decision.disposition == "allow"
    assert Decimal(str(decision.budgets["spend"]["used"])) == expected


def test_the_agents_own_estimate_counts_when_it_is_higher(setup):
    spend_budget(setup, "1")
    run, _ = start_run(setup)
    decision = decide(
        run=run, request=model_call("gpt-4o", 10, 10, estimated_cost_usd=Decimal("0.5"))
    )
    assert decision.budgets["spend"]["used"] == 0.5


def test_an_unpriced_model_is_charged_the_worst_case_never_free(setup, settings):
    settings.TETHER_UNPRICED_INPUT_PER_MTOK = 150
    settings.TETHER_UNPRICED_OUTPUT_PER_MTOK = 600
    spend_budget(setup, "1")
    run, _ = start_run(setup)
    # 5,000 tokens in at $150 and 1,000 out at $600 per million: $1.35 > the $1 budget.
    decision = decide(run=run, request=model_call("in-house-llm-7", 5_000, 1_000))
    assert decision.disposition == "deny" and decision.reasons == ["budget_exhausted"]


def test_reported_usage_is_charged_at_tethers_price_whatever_cost_the_agent_claims(setup):
    spend_budget(setup, "10")
    run, _ = start_run(setup)
    first = decide(run=run, request=model_call("gpt-4o", 1_000_000, 0))
    assert first.budgets["spend"]["used"] == 2.5
    budgets = usage_reconcile(
        run=run, decision_id=first.pk, input_tokens=1_000_000, output_tokens=100_000,
        cached_tokens=1_000_000,
    )  # fmt: skip
    # All input was read from the cache ($1.25 per million) plus 100k out at $10 per million.
    assert budgets["spend"]["used"] == 2.25
    entries = BudgetLedgerEntry.objects.filter(decision=first).order_by("pk")
    assert [e.amount for e in entries] == [Decimal("2.5"), Decimal("-0.25")]
