from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from apps.runtime import counters
from apps.runtime.decisions import DecisionRequest, decide, forget_caches, usage_reconcile
from apps.runtime.models import Budget, BudgetLedgerEntry, Decision

from .conftest import start_run


def lookup(i: int) -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        tool="crm-lookup",
        tool_action="read",
        arguments={"customer_id": f"c{i}"},
    )


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_calls_against_a_budget_of_50_allow_exactly_50(setup):
    Budget.objects.create(
        name="calls per run", kind="tool_calls", scope="run", agent=setup.agent, limit=50
    )
    run, _ = start_run(setup)

    def call(i: int) -> str:
        try:
            return decide(run=run, request=lookup(i)).disposition
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, range(200)))
    assert answers.count("allow") == 50
    assert answers.count("deny") == 150
    assert Decision.objects.filter(run=run, reasons=["budget_exhausted"]).count() == 150
    assert Decision.objects.filter(run=run).count() == 200
    assert BudgetLedgerEntry.objects.filter(decision__run=run).count() == 50


@pytest.mark.django_db
def test_model_call_reserves_its_estimate_and_reconciles_to_what_it_used(setup):
    Budget.objects.create(name="tokens", kind="tokens", scope="run", agent=setup.agent, limit=1000)
    run, _ = start_run(setup)
    estimate = DecisionRequest(
        action="model.call",
        model="gpt-4.1",
        estimated_input_tokens=300,
        estimated_output_tokens=300,
    )
    first = decide(run=run, request=estimate)
    assert first.disposition == "allow"
    assert first.budgets["tokens"]["used"] == 600
    budgets = usage_reconcile(run=run, decision_id=first.pk, input_tokens=100, output_tokens=50)
    assert budgets["tokens"]["used"] == 150
    assert decide(run=run, request=estimate).disposition == "allow"  # 750 of 1000
    assert decide(run=run, request=estimate).reasons == ["budget_exhausted"]


@pytest.mark.django_db
def test_a_degrade_edge_answers_modify_with_the_cheaper_model(setup):
    Budget.objects.create(
        name="tokens",
        kind="tokens",
        scope="run",
        agent=setup.agent,
        limit=100,
        edge="degrade",
        degrade_to_model="gpt-4.1-nano",
    )
    run, _ = start_run(setup)
    decision = decide(
        run=run,
        request=DecisionRequest(action="model.call", model="gpt-4.1", estimated_input_tokens=500),
    )
    assert (decision.disposition, decision.modified) == ("modify", {"model": "gpt-4.1-nano"})


@pytest.mark.django_db
def test_scope_counts_distinct_tools_and_retries_count_repeats(setup):
    Budget.objects.create(name="scope", kind="scope", scope="run", agent=setup.agent, limit=1)
    Budget.objects.create(name="retries", kind="retries", scope="run", agent=setup.agent, limit=1)
    run, _ = start_run(setup)
    assert decide(run=run, request=lookup(1)).disposition == "allow"
    assert decide(run=run, request=lookup(2)).disposition == "allow"  # same tool: scope stays 1
    assert decide(run=run, request=lookup(2)).disposition == "allow"  # first retry
    assert decide(run=run, request=lookup(2)).reasons == ["budget_exhausted"]  # second retry
    refund = DecisionRequest(
        action="tool.invoke", tool="payment-refund", tool_action="create", arguments={"amount": 5}
    )
    assert decide(run=run, request=refund).reasons == ["budget_exhausted"]  # a second tool


@pytest.mark.django_db
def test_with_redis_unreachable_every_decision_is_a_recorded_deny(setup, settings):
    run, _ = start_run(setup)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection
    counters.counter_store.cache_clear()
    forget_caches()
    try:
        decisions = [decide(run=run, request=lookup(i)) for i in range(3)]
    finally:
        counters.counter_store.cache_clear()
    assert {d.disposition for d in decisions} == {"deny"}
    assert all(d.reasons == ["store_unavailable"] for d in decisions)
    assert Decision.objects.filter(run=run, reasons=["store_unavailable"]).count() == 3


@pytest.mark.django_db
def test_a_fail_open_agent_is_allowed_through_an_outage_and_it_is_recorded(setup, settings, org):
    from apps.registry import services as registry

    registry.agent_update(actor=org.owner, agent=setup.agent, data={"failure_posture": "fail_open"})
    run, _ = start_run(setup)
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    counters.counter_store.cache_clear()
    try:
        decision = decide(run=run, request=lookup(1))
    finally:
        counters.counter_store.cache_clear()
    assert (decision.disposition, decision.reasons) == ("allow", ["store_unavailable", "fail_open"])
    assert Decision.objects.filter(pk=decision.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_when_the_database_refuses_the_record_the_answer_is_deny_and_it_is_spooled(
    setup, settings, tmp_path
):
    from apps.runtime.decisions import spool_replay

    settings.VAR_DIR = tmp_path
    run, _ = start_run(setup)
    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")  # the database now refuses writes
    try:
        decision = decide(run=run, request=lookup(1))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")
    assert (decision.pk, decision.disposition, decision.reasons) == (
        None,
        "deny",
        ["store_unavailable"],
    )
    assert not Decision.objects.filter(run=run).exists()
    assert spool_replay() == 1
    replayed = Decision.objects.get(run=run)
    assert (replayed.disposition, replayed.reasons) == ("deny", ["store_unavailable"])


@pytest.mark.django_db
def test_a_model_call_with_no_budget_in_force_is_allowed(setup):
    run, _ = start_run(setup)
    decision = decide(
        run=run,
        request=DecisionRequest(action="model.call", model="gpt-4.1", estimated_input_tokens=10),
    )
    assert (decision.disposition, decision.budgets) == ("allow", {})


@pytest.mark.django_db
def test_a_tools_rate_limit_refuses_calls_over_it_within_the_minute(setup):
    from apps.registry.models import Tool

    Tool.objects.filter(pk=setup.lookup.pk).update(rate_limit_per_minute=2)
    forget_caches()
    run, _ = start_run(setup)
    answers = [decide(run=run, request=lookup(i)) for i in range(3)]
    assert [a.reasons for a in answers] == [["allowed"], ["allowed"], ["rate_limited"]]
    # Over the rate is not a refusal of the step, only of "now": defer, with when to ask again.
    assert answers[2].disposition == "defer"
    assert 1 <= answers[2].retry_after_seconds <= 60
