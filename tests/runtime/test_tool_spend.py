"""A tool's cost per call is charged to the agent's spend budgets, and their edges apply."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.registry import services as registry
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.models import Budget, BudgetLedgerEntry

from .conftest import Setup, start_run

pytestmark = pytest.mark.django_db


def lookup(i: int) -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        tool="crm-lookup",
        tool_action="read",
        arguments={"customer_id": f"c{i}"},
    )


def refund(i: int) -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        tool="payment-refund",
        tool_action="create",
        arguments={"amount": 5, "order": f"o{i}"},
    )


def spend_budget(setup: Setup, *, edge: str = "stop", limit: str = "0.005") -> Budget:
    return Budget.objects.create(
        name="spend per run",
        kind="spend",
        scope="run",
        agent=setup.agent,
        limit=Decimal(limit),
        edge=edge,
        degrade_to_model="gpt-4.1-nano" if edge == "degrade" else "",
    )


def set_cost(org, setup: Setup, cost: str, capture) -> None:
    """Through the service, as the console does; its policy bump reaches the decision point."""
    with capture(execute=True):
        registry.tool_update(actor=org.admin, tool=setup.lookup, data={"cost_per_call_usd": cost})


def test_a_spend_budget_of_half_a_cent_lets_two_calls_of_a_fifth_of_a_cent_through(
    org, setup, django_capture_on_commit_callbacks
):
    set_cost(org, setup, "0.002", django_capture_on_commit_callbacks)
    budget = spend_budget(setup)
    run, _ = start_run(setup)

    first, second, third = (decide(run=run, request=lookup(i)) for i in range(3))

    assert (first.disposition, second.disposition) == ("allow", "allow")
    assert second.budgets["spend per run"]["used"] == pytest.approx(0.004)
    assert (third.disposition, third.reasons) == ("deny", ["budget_exhausted"])
    charged = BudgetLedgerEntry.objects.filter(budget=budget).values_list("amount", flat=True)
    assert sorted(charged) == [Decimal("0.002"), Decimal("0.002")]


def test_a_free_tool_charges_no_spend(org, setup):
    budget = spend_budget(setup, limit="0.0001")
    run, _ = start_run(setup)

    answers = [decide(run=run, request=refund(i)) for i in range(3)]

    assert [a.disposition for a in answers] == ["allow"] * 3
    assert answers[-1].budgets["spend per run"]["used"] == 0
    assert not BudgetLedgerEntry.objects.filter(budget=budget).exists()


@pytest.mark.parametrize(
    ("edge", "disposition", "reasons"),
    [
        ("ask", "ask", ["budget_ask"]),
        ("continue", "allow", ["allowed", "budget_over_continue"]),
        # Degrade swaps a model; a tool call has none to swap, so it is refused.
        ("degrade", "deny", ["budget_exhausted"]),
    ],
)
def test_the_spend_budgets_edge_applies_to_the_call_that_goes_over(
    org, setup, django_capture_on_commit_callbacks, edge, disposition, reasons
):
    set_cost(org, setup, "0.002", django_capture_on_commit_callbacks)
    spend_budget(setup, edge=edge)
    run, _ = start_run(setup)

    answers = [decide(run=run, request=lookup(i)) for i in range(3)]

    assert [a.disposition for a in answers[:2]] == ["allow", "allow"]
    assert (answers[2].disposition, answers[2].reasons) == (disposition, reasons)


def test_an_edited_cost_is_charged_from_the_next_call_on(
    org, setup, django_capture_on_commit_callbacks
):
    set_cost(org, setup, "0.002", django_capture_on_commit_callbacks)
    budget = spend_budget(setup, limit="1")
    run, _ = start_run(setup)
    assert decide(run=run, request=lookup(1)).disposition == "allow"

    set_cost(org, setup, "0.25", django_capture_on_commit_callbacks)
    after = decide(run=run, request=lookup(2))

    assert after.budgets["spend per run"]["used"] == pytest.approx(0.252)
    charged = BudgetLedgerEntry.objects.filter(budget=budget).order_by("pk")
    assert [e.amount for e in charged] == [Decimal("0.002"), Decimal("0.25")]
