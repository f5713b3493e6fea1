"""Real Redis and PostgreSQL servers stopped in the middle of a run (tests/runtime/servers.py).

The whole module runs on a private PostgreSQL cluster, so that it can be stopped without
touching anyone else's database; the Redis tests each start a private redis-server.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import redis
from django.db import close_old_connections, connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from apps.runtime import counters
from apps.runtime.decisions import (
    DecisionRequest,
    decide,
    forget_caches,
    spool_path,
    spool_replay,
    usage_reconcile,
)
from apps.runtime.models import Budget, BudgetLedgerEntry, Decision

from .conftest import Setup, start_run
from .servers import RedisServer, private_postgres  # noqa: F401  (autouse: the module's cluster)


def lookup(i: int) -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        tool="crm-lookup",
        tool_action="read",
        arguments={"customer_id": f"c{i}"},
    )


REFUND = DecisionRequest(
    action="tool.invoke", tool="payment-refund", tool_action="create", arguments={"amount": 5}
)


@pytest.fixture
def private_redis(settings) -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    settings.REDIS_URL = server.url
    counters.counter_store.cache_clear()
    try:
        yield server
    finally:
        server.close()
        counters.counter_store.cache_clear()


def budget(setup: Setup, kind: str, limit: int, **extra) -> Budget:
    return Budget.objects.create(
        name=f"{kind} per run",
        slug=f"{kind.replace('_', '-')}-per-run",
        kind=kind,
        scope="run",
        agent=setup.agent,
        limit=limit,
        **extra,
    )


def ledger_reads(queries: CaptureQueriesContext) -> int:
    return sum(
        1
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and "runtime_budgetledgerentry" in q["sql"]
    )


# --- Redis -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_redis_killed_mid_run_fails_closed_and_restarted_empty_it_still_counts_the_budget(
    setup, private_redis
):
    budget(setup, "tool_calls", 10)
    run, _ = start_run(setup)
    before = [decide(run=run, request=lookup(i)) for i in range(6)]
    assert [d.disposition for d in before] == ["allow"] * 6

    private_redis.kill()
    outage = [decide(run=run, request=lookup(100 + i)) for i in range(3)]
    assert [(d.disposition, d.reasons) for d in outage] == [("deny", ["store_unavailable"])] * 3
    assert Decision.objects.filter(pk__in=[d.pk for d in outage]).count() == 3

    private_redis.start()
    assert redis.Redis.from_url(private_redis.url).dbsize() == 0  # it kept nothing
    after = [decide(run=run, request=lookup(200 + i)) for i in range(6)]
    assert [d.reasons for d in after] == [["allowed"]] * 4 + [["budget_exhausted"]] * 2
    assert after[3].budgets["tool_calls per run"]["used"] == 10

    answers = before + outage + after
    allows = sum(d.disposition == "allow" for d in answers)
    assert allows == 10
    assert Decision.objects.filter(run=run, disposition="allow").count() == allows
    assert Decision.objects.filter(run=run).count() == len(answers)
    charged = BudgetLedgerEntry.objects.filter(decision__run=run).aggregate(s=Sum("amount"))["s"]
    assert charged == Decimal(10)


@pytest.mark.django_db(transaction=True)
def test_redis_killed_under_concurrent_decisions_leaves_no_allow_without_its_row(
    setup, private_redis
):
    calls = budget(setup, "tool_calls", 100_000)
    run, _ = start_run(setup)
    answers: list[Decision] = []
    lock = threading.Lock()
    stop = threading.Event()
    numbers = itertools.count()

    def agent() -> None:
        try:
            while not stop.is_set():
                decision = decide(run=run, request=lookup(next(numbers)))
                with lock:
                    answers.append(decision)
        finally:
            connection.close()

    def wait_for(condition, what: str) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    with ThreadPoolExecutor(max_workers=6) as pool:
        workers = [pool.submit(agent) for _ in range(6)]
        wait_for(lambda: len(answers) >= 30, "allowed calls")
        private_redis.kill()
        killed_at = len(answers)
        wait_for(lambda: len(answers) >= killed_at + 30, "decisions during the outage")
        stop.set()
        for worker in workers:
            worker.result()

    allows = [d for d in answers if d.disposition == "allow"]
    denies = [d for d in answers if d.disposition != "allow"]
    assert len(allows) >= 30 and len(denies) >= 25
    assert {tuple(d.reasons) for d in denies} == {("store_unavailable",)}
    assert all(d.pk is not None for d in answers)
    assert Decision.objects.filter(run=run).count() == len(answers)
    assert Decision.objects.filter(run=run, disposition="allow").count() == len(allows)
    assert BudgetLedgerEntry.objects.filter(decision__run=run).count() == len(allows)

    # Back, empty: the budget goes on from what the ledger says was used.
    private_redis.start()
    Budget.objects.filter(pk=calls.pk).update(limit=len(allows) + 3)
    forget_caches()
    after = [decide(run=run, request=lookup(10_000 + i)).reasons for i in range(5)]
    assert after == [["allowed"]] * 3 + [["budget_exhausted"]] * 2


@pytest.mark.django_db
def test_a_scope_budget_rebuilds_its_set_of_tools_in_one_ledger_query(setup, private_redis):
    budget(setup, "scope", 1)
    budget(setup, "tool_calls", 50)
    run, _ = start_run(setup)
    assert decide(run=run, request=lookup(1)).disposition == "allow"  # scope: {crm-lookup}

    private_redis.kill()
    private_redis.start()
    with CaptureQueriesContext(connection) as queries:
        refund = decide(run=run, request=REFUND)
    assert refund.reasons == ["budget_exhausted"]  # a second tool is over a scope of 1
    assert ledger_reads(queries) == 1  # both budgets were missing: one query rebuilt them
    # crm-lookup is in the rebuilt set: calling it again is no new scope.
    assert decide(run=run, request=lookup(2)).reasons == ["allowed"]
    assert redis.Redis.from_url(private_redis.url).smembers(
        f"tether:budget:{Budget.objects.get(kind='scope').pk}:run:{run.pk}:set"
    ) == {b"crm-lookup"}


@pytest.mark.django_db
def test_usage_reconciled_while_the_counter_is_lost_is_counted_once_it_is_rebuilt(
    setup, private_redis
):
    budget(setup, "tokens", 1000)
    run, _ = start_run(setup)
    estimate = DecisionRequest(
        action="model.call",
        model="gpt-4.1",
        estimated_input_tokens=300,
        estimated_output_tokens=300,
    )
    first = decide(run=run, request=estimate)
    assert first.disposition == "allow"  # 600 reserved

    private_redis.kill()
    private_redis.start()
    # The correction (-450) is not added to an absent key; the ledger holds it.
    usage_reconcile(run=run, decision_id=first.pk, input_tokens=100, output_tokens=50)
    second = decide(run=run, request=estimate)
    assert (second.disposition, second.budgets["tokens per run"]["used"]) == ("allow", 750)
    assert decide(run=run, request=estimate).reasons == ["budget_exhausted"]


@pytest.mark.django_db
def test_when_the_counters_exist_a_decision_costs_one_script_call_and_no_ledger_query(
    setup, private_redis
):
    budget(setup, "tool_calls", 100)
    budget(setup, "scope", 10)
    run, _ = start_run(setup)
    decide(run=run, request=lookup(0))  # the run's first charge creates (seeds) its counters
    client = redis.Redis.from_url(private_redis.url)
    client.config_resetstat()
    with CaptureQueriesContext(connection) as queries:
        assert decide(run=run, request=lookup(1)).disposition == "allow"
    stats = client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert "cmdstat_eval" not in stats
    assert ledger_reads(queries) == 0


@pytest.mark.django_db
def test_the_embedded_counter_store_rebuilds_budgets_from_the_ledger_in_a_new_process(
    setup, settings
):
    settings.REDIS_URL = ""
    counters.counter_store.cache_clear()
    try:
        budget(setup, "tool_calls", 5)
        run, _ = start_run(setup)
        assert isinstance(counters.counter_store(), counters.LocalCounterStore)
        assert [decide(run=run, request=lookup(i)).disposition for i in range(3)] == ["allow"] * 3
        counters.counter_store.cache_clear()  # a restarted process: an empty local store
        answers = [decide(run=run, request=lookup(10 + i)).reasons for i in range(3)]
    finally:
        counters.counter_store.cache_clear()
    assert answers == [["allowed"], ["allowed"], ["budget_exhausted"]]


# --- PostgreSQL ------------------------------------------------------------------------------


def as_a_request(run, request: DecisionRequest) -> Decision:
    """Each decision in its own request: Django drops a broken connection between requests
    (close_old_connections on request_started/finished), which the test client would skip."""
    close_old_connections()
    try:
        return decide(run=run, request=request)
    finally:
        close_old_connections()


@pytest.mark.django_db(transaction=True)
def test_postgresql_stopped_mid_run_spools_denies_and_they_are_replayed_when_it_is_back(
    setup,
    settings,
    tmp_path,
    private_postgres,  # noqa: F811  (the imported fixture)
):
    settings.VAR_DIR = tmp_path
    # The policy snapshot stays fresh through the outage, so the pipeline needs no query and
    # the record is what fails (the next test covers a pipeline that does need the database).
    settings.POLICY_REFRESH_MS = 60_000
    budget(setup, "tool_calls", 50)
    run, _ = start_run(setup)
    before = [as_a_request(run, lookup(i)) for i in range(3)]
    assert [d.disposition for d in before] == ["allow"] * 3

    private_postgres.stop()
    try:
        outage = [as_a_request(run, lookup(100 + i)) for i in range(3)]
    finally:
        private_postgres.start()
    assert [(d.pk, d.disposition, d.reasons) for d in outage] == [
        (None, "deny", ["store_unavailable"])
    ] * 3
    assert len(spool_path().read_text().splitlines()) == 3  # on disk, fsynced

    # Back. Django's psycopg pool may still hold connections the restart ended: each is
    # thrown away the first time it is lent, and that request's decision fails closed into
    # the spool. So at most the pool's size of decisions are denied before they work again.
    pool = connection.settings_dict["OPTIONS"].get("pool")
    most = (pool.get("max_size", 4) if isinstance(pool, dict) else 4) if pool else 0
    recovering = [as_a_request(run, lookup(200))]
    while recovering[-1].disposition != "allow" and len(recovering) <= most:
        recovering.append(as_a_request(run, lookup(200 + len(recovering))))
    stale = recovering[:-1]
    assert recovering[-1].disposition == "allow", f"still failing after {len(stale)} requests"
    assert {(d.pk, d.disposition, tuple(d.reasons)) for d in stale} <= {
        (None, "deny", ("store_unavailable",))
    }
    after = recovering[-1:] + [as_a_request(run, lookup(300 + i)) for i in range(3)]
    assert [d.disposition for d in after] == ["allow"] * 4

    assert spool_replay() == 3 + len(stale)
    assert not spool_path().exists()
    spooled = Decision.objects.filter(run=run, reasons=["store_unavailable"])
    assert sorted(spooled.values_list("disposition", flat=True)) == ["deny"] * (3 + len(stale))
    assert Decision.objects.filter(pk__in=[d.pk for d in after]).count() == 4
    assert Decision.objects.filter(run=run).count() == 3 + 3 + len(stale) + 4
    assert Decision.objects.filter(run=run, disposition="allow").count() == 7
    assert BudgetLedgerEntry.objects.filter(decision__run=run).count() == 7
    print(f"after the restart, {len(stale)} decision(s) met a dead pooled connection")


@pytest.mark.django_db(transaction=True)
def test_a_decision_whose_pipeline_needs_postgresql_while_it_is_down_is_a_spooled_deny(
    setup,
    settings,
    tmp_path,
    private_postgres,  # noqa: F811  (the imported fixture)
):
    settings.VAR_DIR = tmp_path
    settings.POLICY_REFRESH_MS = 0  # every decision checks the policy snapshot's freshness
    run, _ = start_run(setup)
    assert as_a_request(run, lookup(1)).disposition == "allow"
    private_postgres.stop()
    try:
        decision = as_a_request(run, lookup(2))
    finally:
        private_postgres.start()
        if connection.pool is not None:  # not what this test is about: drop dead connections
            connection.pool.check()
    assert (decision.pk, decision.disposition, decision.reasons) == (
        None,
        "deny",
        ["store_unavailable"],
    )
    close_old_connections()
    assert spool_replay() == 1


@pytest.mark.django_db
def test_after_a_redis_loss_the_budgets_shown_come_from_the_ledger_until_rebuilt(
    setup, private_redis
):
    from apps.runtime.decisions import budget_used

    per_run = budget(setup, "tool_calls", 10)
    daily = Budget.objects.create(
        name="daily calls", slug="daily-calls", kind="tool_calls", scope="agent_day",
        agent=setup.agent, limit=100,
    )  # fmt: skip
    run, _ = start_run(setup)
    for i in range(3):
        decide(run=run, request=lookup(i))

    private_redis.kill()
    private_redis.start()  # empty: every counter is gone
    # Nothing has charged since, so nothing is rebuilt yet; the view still tells the truth.
    assert budget_used([per_run, daily], run) == {per_run.pk: 3.0, daily.pk: 3.0}
    assert budget_used([per_run, daily]) == {daily.pk: 3.0}  # the console's view: no run
