"""Spans are priced as they are stored, and the cost rollups always equal the raw spans: over
several exports, a retried export (its spans stored once), and a span that arrives after its
run was counted as a task. A rebuild from the spans gives the same rollups."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.costs.models import (
    AgentCostDaily,
    CostDaily,
    DepartmentCostDaily,
    MonthCost,
    PersonCostDaily,
    RunCost,
    TaskCostDaily,
)
from apps.costs.prices import model_cost
from apps.costs.rollups import finished_runs_count
from apps.registry import services as registry
from apps.runtime import services as runtime
from apps.traces.models import Span, Trace
from apps.traces.services import spans_ingest
from tests.traces.conftest import Sender, export, span_at
from tests.traces.conftest import sender as sender

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def chat(when: datetime, model: str = "gpt-4o", tokens: tuple[int, int] = (1000, 200), **more: Any):
    return span_at(
        when,
        f"chat {model}",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": tokens[0],
            "gen_ai.usage.output_tokens": tokens[1],
            **more,
        },
    )


def ingest(sender: Sender, *spans) -> int:
    return spans_ingest(request=export(*spans), credential=sender.credential).stored


def test_a_model_span_is_priced_at_its_models_price_when_it_is_stored(sender):
    span = chat(NOW, tokens=(1_000_000, 100_000), **{"tether.run.id": "x"})
    ingest(sender, span)
    stored = Span.objects.get()
    assert (stored.cost_usd, stored.cost_source) == (Decimal("3.500000"), "catalogue")
    assert Trace.objects.get().cost_usd == Decimal("3.500000")


def test_an_unknown_model_is_charged_at_the_worst_case_and_marked_unpriced(sender, settings):
    settings.TETHER_UNPRICED_INPUT_PER_MTOK = 150
    settings.TETHER_UNPRICED_OUTPUT_PER_MTOK = 600
    ingest(sender, chat(NOW, model="in-house-llm-7", tokens=(10_000, 1_000)))
    stored = Span.objects.get()
    assert (stored.cost_usd, stored.cost_source) == (Decimal("2.100000"), "unpriced")
    row = CostDaily.objects.get()
    assert (row.source, row.cost_usd, row.model) == (
        "unpriced",
        Decimal("2.100000"),
        "in-house-llm-7",
    )


def test_an_agent_span_repeating_its_childrens_tokens_costs_nothing_itself(sender):
    agent_span = span_at(
        NOW,
        "invoke_agent claims",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
        },
    )
    ingest(sender, agent_span)
    assert Span.objects.get().cost_usd is None
    assert not CostDaily.objects.exists()


def test_spend_is_attributed_to_the_agents_department_team_and_process_at_the_time(org, sender):
    registry.agent_update(
        actor=org.admin,
        agent=sender.agent,
        data={"team": org.claims_ops, "business_process": "claims intake"},
    )
    ingest(sender, chat(NOW))
    row = CostDaily.objects.get()
    assert (row.agent_id, row.department_id, row.team_id, row.business_process) == (
        sender.agent.pk, org.claims.pk, org.claims_ops.pk, "claims intake",
    )  # fmt: skip
    assert (row.environment, row.model, row.provider, row.calls) == ("prod", "gpt-4o", "openai", 1)
    assert (row.input_tokens, row.output_tokens) == (1000, 200)


def test_a_runs_spend_is_booked_to_the_person_it_acted_for(org, sender):
    runtime.delegation_grant(
        person=org.owner, agent=sender.agent, expires_at=timezone.now() + timedelta(days=1)
    )
    run, _ = runtime.run_start(
        credential=sender.credential, task="Triage claim 9", on_behalf_of=org.owner.username
    )
    ingest(sender, chat(NOW, **{"tether.run.id": str(run.pk)}))
    person = PersonCostDaily.objects.get()
    assert (person.person_id, person.department_id) == (org.owner.pk, org.claims.pk)
    assert RunCost.objects.get(run_id=run.pk).cost_usd == Span.objects.get().cost_usd


def raw_days() -> dict[tuple[Any, ...], tuple[Decimal, int]]:
    rows = (
        Span.objects.filter(cost_usd__isnull=False)
        .values("agent_id", "model", "cost_source", day=TruncDate("start_time", tzinfo=UTC))
        .annotate(cost=Sum("cost_usd"), calls=Count("id"))
    )
    return {
        (r["day"], r["agent_id"], r["model"], r["cost_source"]): (r["cost"], r["calls"])
        for r in rows
    }


def rolled_days() -> dict[tuple[Any, ...], tuple[Decimal, int]]:
    return {
        (r.day, r.agent_id, r.model, r.source): (r.cost_usd, r.calls)
        for r in CostDaily.objects.all()
    }


def raw_tasks() -> dict[tuple[Any, ...], tuple[int, Decimal]]:
    tasks: dict[tuple[Any, ...], tuple[int, Decimal]] = {}
    for run in runtime.Run.objects.exclude(state="running"):
        cost = Span.objects.filter(run=run).aggregate(c=Sum("cost_usd"))["c"] or Decimal(0)
        key = (run.ended_at.date(), run.agent.department_id, run.state, run.outcome)
        runs, total = tasks.get(key, (0, Decimal(0)))
        tasks[key] = (runs + 1, total + cost)
    return tasks


def rolled_tasks() -> dict[tuple[Any, ...], tuple[int, Decimal]]:
    return {
        (t.day, t.department_id, t.state, t.outcome): (t.runs, t.cost_usd)
        for t in TaskCostDaily.objects.all()
    }


def snapshot() -> list[list[tuple[Any, ...]]]:
    def rows(model, *fields):
        return sorted(model.objects.values_list(*fields))

    return [
        rows(CostDaily, "day", "agent_id", "department_id", "team_id", "business_process",
             "environment", "model", "provider", "source", "cost_usd", "calls", "input_tokens",
             "output_tokens"),
        rows(PersonCostDaily, "day", "person_id", "department_id", "environment", "cost_usd", "calls"),
        rows(MonthCost, "month", "department_id", "team_id", "cost_usd"),
        rows(DepartmentCostDaily, "day", "department_id", "team_id", "environment", "model",
             "provider", "source", "cost_usd", "calls", "input_tokens", "output_tokens"),
        rows(AgentCostDaily, "day", "agent_id", "department_id", "environment", "cost_usd", "calls"),
        rows(RunCost, "run_id", "agent_id", "department_id", "cost_usd", "calls", "counted_state",
             "counted_outcome", "counted_day"),
        rows(TaskCostDaily, "day", "department_id", "environment", "state", "outcome", "runs",
             "cost_usd"),
    ]  # fmt: skip


def test_rollups_equal_the_raw_spans_with_retried_exports_and_late_spans(org, sender):
    approved, _ = runtime.run_start(credential=sender.credential, task="Claim 1")
    rejected, _ = runtime.run_start(credential=sender.credential, task="Claim 2")
    silent, _ = runtime.run_start(credential=sender.credential, task="Claim 3")
    day_before = NOW - timedelta(days=1)
    first = [
        chat(day_before, **{"tether.run.id": str(approved.pk)}),
        chat(NOW, model="gpt-4o-mini", tokens=(5000, 50), **{"tether.run.id": str(approved.pk)}),
        chat(NOW, model="in-house-llm-7", **{"tether.run.id": str(rejected.pk)}),
        chat(NOW),  # in no run
    ]
    assert ingest(sender, *first) == 4
    assert ingest(sender, *first) == 0  # the exporter retried: nothing is stored twice
    runtime.run_finish(run=approved, state="finished", outcome="approved")
    runtime.run_finish(run=rejected, state="finished", outcome="rejected")
    runtime.run_finish(run=silent, state="failed")
    later = timezone.now() + timedelta(seconds=1)
    assert finished_runs_count(now=later) == 3
    assert finished_runs_count(now=later) == 0  # each run is counted once
    # A span of an ended, counted run arrives late, next to a duplicate of one stored before.
    late = chat(
        NOW - timedelta(days=3), tokens=(40_000, 4_000), **{"tether.run.id": str(approved.pk)}
    )
    assert ingest(sender, late, first[0]) == 1

    assert rolled_days() == raw_days()
    assert rolled_tasks() == raw_tasks()
    spent = Span.objects.filter(run=approved).aggregate(c=Sum("cost_usd"))["c"]
    assert RunCost.objects.get(run_id=approved.pk).cost_usd == spent
    assert RunCost.objects.get(run_id=silent.pk).cost_usd == 0  # counted, costing nothing
    total = Span.objects.aggregate(c=Sum("cost_usd"))["c"]
    assert CostDaily.objects.aggregate(c=Sum("cost_usd"))["c"] == total
    assert PersonCostDaily.objects.aggregate(c=Sum("cost_usd"))["c"] == total
    for summary in (MonthCost, DepartmentCostDaily, AgentCostDaily):
        assert summary.objects.aggregate(c=Sum("cost_usd"))["c"] == total, summary

    incremental = snapshot()
    call_command("costs_backfill", stdout=io.StringIO())
    assert snapshot() == incremental


def test_the_backfill_prices_spans_stored_without_a_price(sender):
    ingest(sender, chat(NOW, tokens=(1_000_000, 0)))
    Span.objects.update(cost_usd=None, cost_source="")
    CostDaily.objects.all().delete()
    call_command("costs_backfill", "--since", "2026-11-01", stdout=io.StringIO())
    stored = Span.objects.get()
    expected = model_cost(model="gpt-4o", provider="openai", input_tokens=1_000_000, at=NOW)
    assert (stored.cost_usd, stored.cost_source) == (expected.usd, "catalogue")
    assert CostDaily.objects.get().cost_usd == expected.usd


def test_the_backfill_says_what_a_bad_day_is():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("costs_backfill", "--since", "last tuesday")
