"""Rebuilding the cost rollups from the spans themselves (``manage.py costs_backfill``).

For spans stored before Tether priced spans, after a negotiated price was entered for days
already past (``reprice``), or to check the incremental rollups (they must come out the same).
Spans are priced as the ingest prices them (apps/traces/costing.py), then the day rollups from
``since`` and every run's cost and task are summed again from the spans, in one transaction:
dashboards see the old rollups or the new ones, never half of each. The spend of past days is
attributed to each agent's department, team and business process as they are now.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate, TruncMonth

from apps.registry.tool_costs import tool_costs
from apps.runtime.constants import RunState
from apps.runtime.models import Run
from apps.traces.constants import SpanKind
from apps.traces.costing import span_cost
from apps.traces.models import Span

from .models import (
    AgentCostDaily,
    CostDaily,
    DepartmentCostDaily,
    MonthCost,
    PersonCostDaily,
    RunCost,
    TaskCostDaily,
)
from .rollups import _add, _key, _upsert, attribution, forget_attributions, forget_month_spend

PRICE_BATCH = 2000


@dataclass
class BackfillResult:
    priced: int = 0
    day_rows: int = 0
    runs: int = 0
    tasks: int = 0


def cost_rollups_rebuild(*, since: date | None = None, reprice: bool = False) -> BackfillResult:
    """Price the spans that lack a price (every span with ``reprice``) stored from ``since``
    (default: all), then rebuild the rollups from them."""
    forget_attributions()
    result = BackfillResult()
    start = datetime.combine(since, time.min, tzinfo=UTC) if since else None
    with transaction.atomic():
        result.priced = _price_spans(start, reprice=reprice)
        result.day_rows = _rebuild_days(start)
        result.runs, result.tasks = _rebuild_runs()
    return result


def _costable(start: datetime | None, reprice: bool) -> Any:
    spans = Span.objects.filter(
        Q(kind=SpanKind.LLM, model__gt="") | Q(kind=SpanKind.TOOL, tool_name__gt="")
    )
    if not reprice:
        spans = spans.filter(cost_source="")
    return spans.filter(start_time__gte=start) if start else spans


def _batches(start: datetime | None, reprice: bool) -> Iterator[list[Span]]:
    last = 0
    fields = (
        "id", "start_time", "kind", "model", "provider", "input_tokens", "output_tokens",
        "cached_tokens", "tool_name", "cost_usd", "cost_source",
    )  # fmt: skip
    while True:
        batch = list(
            _costable(start, reprice).filter(id__gt=last).order_by("id").only(*fields)[:PRICE_BATCH]
        )
        if not batch:
            return
        last = batch[-1].pk
        yield batch


def _price_spans(start: datetime | None, *, reprice: bool) -> int:
    tools = tool_costs()
    priced = 0
    for batch in _batches(start, reprice):
        changed = []
        for span in batch:
            cost, source = span_cost(span, tools)
            if (cost, source) != (span.cost_usd, span.cost_source):
                span.cost_usd, span.cost_source = cost, source
                changed.append(span)
        Span.objects.bulk_update(changed, ["cost_usd", "cost_source"])
        priced += len(changed)
    return priced


def _rebuild_days(start: datetime | None) -> int:
    spans = Span.objects.filter(cost_usd__isnull=False)
    if start is not None:
        spans = spans.filter(start_time__gte=start)
        CostDaily.objects.filter(day__gte=start.date()).delete()
        PersonCostDaily.objects.filter(day__gte=start.date()).delete()
    else:
        CostDaily.objects.all().delete()
        PersonCostDaily.objects.all().delete()
    day = TruncDate("start_time", tzinfo=UTC)
    daily: dict[tuple[Any, ...], list[Any]] = {}
    for row in (
        spans.values("agent_id", "environment", "model", "provider", "cost_source", span_day=day)
        .annotate(
            cost=Sum("cost_usd"), calls=Count("id"), inputs=Sum("input_tokens"),
            outputs=Sum("output_tokens"),
        )
        .order_by()
    ):  # fmt: skip
        who = attribution(row["agent_id"])
        key = (
            row["span_day"], row["agent_id"] or 0, row["environment"], row["model"],
            row["provider"], row["cost_source"], who.department_id, who.team_id,
            who.business_process,
        )  # fmt: skip
        _add(daily, key, row["cost"], row["calls"], row["inputs"] or 0, row["outputs"] or 0)
    people: dict[tuple[Any, ...], list[Any]] = {}
    for person_row in (
        spans.values("agent_id", "environment", "run__on_behalf_of_id", span_day=day)
        .annotate(cost=Sum("cost_usd"), calls=Count("id"))
        .order_by()
    ):
        who = attribution(person_row["agent_id"])
        person = person_row["run__on_behalf_of_id"] or 0
        person_key = (person_row["span_day"], person, who.department_id, person_row["environment"])
        _add(people, person_key, person_row["cost"], person_row["calls"])
    _upsert(CostDaily, daily, ("cost_usd", "calls", "input_tokens", "output_tokens"))
    _upsert(PersonCostDaily, people, ("cost_usd", "calls"))
    return len(daily) + len(people) + _rebuild_summaries()


def _rebuild_summaries() -> int:
    """The rollups summed from the day rollup itself: per department, per agent, per month."""
    rebuilt = 0
    summaries: list[tuple[type[Any], tuple[str, ...]]] = [
        (DepartmentCostDaily, ("cost_usd", "calls", "input_tokens", "output_tokens")),
        (AgentCostDaily, ("cost_usd", "calls")),
    ]
    for model, amounts in summaries:
        keys = _key(model)  # fields of the day rollup too
        model.objects.all().delete()
        table: dict[tuple[Any, ...], list[Any]] = {}
        for row in (
            CostDaily.objects.values(*keys)
            .annotate(**{f"sum_{a}": Sum(a) for a in amounts})
            .order_by()
        ):
            _add(table, tuple(row[k] for k in keys), *(row[f"sum_{a}"] for a in amounts))
        _upsert(model, table, amounts)
        rebuilt += len(table)
    MonthCost.objects.all().delete()
    months: dict[tuple[Any, ...], list[Any]] = {}
    for row in (
        CostDaily.objects.values("department_id", "team_id", month=TruncMonth("day"))
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    ):
        _add(months, (row["month"], row["department_id"], row["team_id"]), row["cost"])
    _upsert(MonthCost, months, ("cost_usd",))
    forget_month_spend()
    return rebuilt + len(months)


def tasks_rebuild() -> int:
    """The task rollup summed from the runs counted as tasks (``RunCost.counted_*``): the two
    always agree, and this is how the task rollup is rebuilt from its runs."""
    TaskCostDaily.objects.all().delete()
    tasks: dict[tuple[Any, ...], list[Any]] = {}
    for row in (
        RunCost.objects.exclude(counted_state="")
        .values("counted_day", "department_id", "environment", "counted_state", "counted_outcome")
        .annotate(runs=Count("run_id"), cost=Sum("cost_usd"))
        .order_by()
    ):
        key = (
            row["counted_day"], row["department_id"], row["environment"], row["counted_state"],
            row["counted_outcome"],
        )  # fmt: skip
        _add(tasks, key, row["runs"], row["cost"])
    _upsert(TaskCostDaily, tasks, ("runs", "cost_usd"))
    return sum(v[0] for v in tasks.values())


def _rebuild_runs() -> tuple[int, int]:
    """Every run's cost from its spans, and every ended run counted as a task once."""
    RunCost.objects.all().delete()
    spent = {
        row["run_id"]: row
        for row in Span.objects.filter(run__isnull=False, cost_usd__isnull=False)
        .values("run_id")
        .annotate(cost=Sum("cost_usd"), calls=Count("id"))
        .order_by()
    }
    runs = Run.objects.filter(Q(pk__in=list(spent)) | ~Q(state=RunState.RUNNING)).values_list(
        "pk", "agent_id", "environment", "state", "outcome", "ended_at"
    )
    rows: list[RunCost] = []
    for pk, agent_id, environment, state, outcome, ended_at in runs.iterator():
        who = attribution(agent_id)
        cost = spent[pk]["cost"] if pk in spent else Decimal(0)
        ended_on = ended_at.date() if state != RunState.RUNNING and ended_at is not None else None
        rows.append(
            RunCost(
                run_id=pk, agent_id=agent_id, department_id=who.department_id,
                team_id=who.team_id, environment=environment, cost_usd=cost,
                calls=spent[pk]["calls"] if pk in spent else 0,
                counted_state=state if ended_on else "",
                counted_outcome=outcome if ended_on else "", counted_day=ended_on,
            )
        )  # fmt: skip
    RunCost.objects.bulk_create(rows, batch_size=PRICE_BATCH)
    return len(rows), tasks_rebuild()
