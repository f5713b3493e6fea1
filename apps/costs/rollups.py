"""Cost rollups, kept up to date as spans are stored, so no dashboard ever sums raw spans.

As an export's spans are inserted (apps/traces/hooks.py: in the same transaction, only the
spans really inserted, so a retried export adds nothing) their costs are added into
:class:`CostDaily` (per day, agent, team, department, business process, environment, model,
provider and price source; :class:`DepartmentCostDaily` and :class:`AgentCostDaily` sum it
without the agent, and without the model, for the charts), :class:`PersonCostDaily` (per
person the run acted for) and
:class:`RunCost` (per run). A run's spend is attributed to the agent's department, team and
business process as they are when the spend is stored: a cost centre's past does not move when
an agent changes hands.

Runs are counted as tasks once they end, by the minute job (:func:`finished_runs_count`):
each ended run is added once to :class:`TaskCostDaily` under its end state and outcome, with
its cost so far; a span of that run stored later adds its cost there too.

Each merge is one ``INSERT ... ON CONFLICT DO UPDATE`` per table that adds to the row, written
in key order, so concurrent exports add up and cannot deadlock on each other. A rebuild from
the spans themselves (``manage.py costs_backfill``) gives the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, cast

from django.db import connection, transaction
from django.db.models import Field, Model, UniqueConstraint
from django.utils import timezone

from apps.common import generation
from apps.common.db import server_cursor
from apps.registry.models import Agent
from apps.registry.services import POLICY_GENERATION
from apps.runtime.constants import RunState
from apps.runtime.models import Run
from apps.traces.storage import SpanRow

from .models import (
    AgentCostDaily,
    CostDaily,
    DepartmentCostDaily,
    MonthCost,
    PersonCostDaily,
    RollupCursor,
    RunCost,
    TaskCostDaily,
)

# Runs whose end committed after a later run's (transactions overlap) are still found: each
# minute the job looks this far behind the newest end it has counted.
FINISHED_RUNS_MARGIN = timedelta(minutes=10)
FINISHED_RUNS_BATCH = 5000
FINISHED_RUNS_CURSOR = "finished-runs"
UPSERT_BATCH = 500


class Attribution(NamedTuple):
    department_id: int
    team_id: int
    business_process: str


UNATTRIBUTED = Attribution(0, 0, "")


def _attributions() -> dict[int, Attribution]:
    return {
        pk: Attribution(department or 0, team or 0, process)
        for pk, department, team, process in Agent.objects.values_list(
            "pk", "department_id", "team_id", "business_process"
        )
    }


# Registry writes bump the policy generation: the table follows an agent moving departments.
_agents = generation.CachedTable(POLICY_GENERATION, _attributions, refresh=1.0)


def forget_attributions() -> None:
    _agents.forget()


def attribution(agent_id: int | None) -> Attribution:
    if not agent_id:
        return UNATTRIBUTED
    found = _agents.get().get(agent_id)
    if found is None:  # registered after the table was built
        _agents.forget()
        found = _agents.get().get(agent_id, UNATTRIBUTED)
    return found


# --- what each department and team spent this month (monthly budgets) -------------------------


def _this_month() -> tuple[date, dict[tuple[int, int], Decimal]]:
    month = timezone.now().date().replace(day=1)
    return month, {
        (department, team): cost
        for department, team, cost in MonthCost.objects.filter(month=month).values_list(
            "department_id", "team_id", "cost_usd"
        )
    }


# A few rows, read again every MONTH_SPEND_MAX_AGE seconds by every process that decides; the
# process that stored the spend reads it afresh at once.
MONTH_SPEND_MAX_AGE = 2.0
_month = generation.CachedTable(
    "month-spend", _this_month, refresh=MONTH_SPEND_MAX_AGE, max_age=MONTH_SPEND_MAX_AGE
)


def forget_month_spend() -> None:
    _month.forget()


def month_spend(*, department_id: int, team_id: int | None = None) -> Decimal:
    """What the department (or one of its teams) has spent this calendar month (UTC)."""
    month, table = _month.get()
    if month != timezone.now().date().replace(day=1):  # the month turned since it was read
        _month.forget()
        month, table = _month.get()
    if team_id is not None:
        return table.get((department_id, team_id), Decimal(0))
    return sum((cost for (dept, _), cost in table.items() if dept == department_id), Decimal(0))


# --- merging stored spans ----------------------------------------------------------------------


def cost_rollups_merge(rows: Sequence[SpanRow]) -> None:
    """Add the costs of freshly stored spans to the rollups (the ingest's transaction)."""
    priced = [row for row in rows if row.cost_usd is not None]
    if not priced:
        return
    daily: dict[tuple[Any, ...], list[Any]] = {}
    departments: dict[tuple[Any, ...], list[Any]] = {}
    agents: dict[tuple[Any, ...], list[Any]] = {}
    people: dict[tuple[Any, ...], list[Any]] = {}
    months: dict[tuple[Any, ...], list[Any]] = {}
    runs: dict[uuid.UUID, list[Any]] = {}
    behalf = _on_behalf_of({row.run_id for row in priced if row.run_id is not None})
    # An export's spans name few agents: each is looked up once, not once a span.
    attributed = {agent_id: attribution(agent_id) for agent_id in {row.agent_id for row in priced}}
    for row in priced:
        who = attributed[row.agent_id]
        day = row.start_time.date()
        cost = row.cost_usd or Decimal(0)
        key = (
            day, row.agent_id or 0, row.environment, row.model, row.provider, row.cost_source,
            who.department_id, who.team_id, who.business_process,
        )  # fmt: skip
        tokens = (row.input_tokens or 0, row.output_tokens or 0)
        _add(daily, key, cost, 1, *tokens)
        department_key = (
            day, who.department_id, who.team_id, row.environment, row.model, row.provider,
            row.cost_source,
        )  # fmt: skip
        _add(departments, department_key, cost, 1, *tokens)
        _add(agents, (day, row.agent_id or 0, who.department_id, row.environment), cost, 1)
        person = behalf.get(row.run_id, 0) if row.run_id else 0
        _add(people, (day, person, who.department_id, row.environment), cost, 1)
        _add(months, (day.replace(day=1), who.department_id, who.team_id), cost)
        if row.run_id is not None:
            held = runs.setdefault(
                row.run_id,
                [row.agent_id or 0, who.department_id, who.team_id, row.environment, 0, 0],
            )
            held[4] += cost
            held[5] += 1
    _upsert(CostDaily, daily, ("cost_usd", "calls", "input_tokens", "output_tokens"))
    _upsert(
        DepartmentCostDaily, departments, ("cost_usd", "calls", "input_tokens", "output_tokens")
    )
    _upsert(AgentCostDaily, agents, ("cost_usd", "calls"))
    _upsert(PersonCostDaily, people, ("cost_usd", "calls"))
    _upsert(MonthCost, months, ("cost_usd",))
    _runs_merge(runs)
    transaction.on_commit(forget_month_spend)  # this process holds budgets to it at once


def _add(table: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], *amounts: Any) -> None:
    held = table.get(key)
    if held is None:
        table[key] = list(amounts)
    else:
        for i, amount in enumerate(amounts):
            held[i] += amount


def _key(model: type[Model]) -> tuple[str, ...]:
    """A rollup's key: the fields of its one unique constraint, the ``ON CONFLICT`` target."""
    (constraint,) = (c for c in model._meta.constraints if isinstance(c, UniqueConstraint))
    return tuple(constraint.fields)


_PG_TYPES = {
    "DateField": "date",
    "BigIntegerField": "bigint",
    "CharField": "varchar",
    "DecimalField": "numeric",
}


def _upsert(
    model: type[Model], rows: dict[tuple[Any, ...], list[Any]], amounts: tuple[str, ...]
) -> None:
    """Add ``rows`` (key -> amounts) into ``model``'s table, creating the rows it lacks.

    On PostgreSQL the rows go as one array per column (``unnest``), bound server-side: a short
    statement prepared once per connection, where a ``VALUES`` list of hundreds of placeholders
    is parsed and quoted again on every export (a third of an export's time, measured)."""
    if not rows:
        return
    keys = _key(model)
    table = model._meta.db_table
    columns = (*keys, *amounts)
    fields = [cast("Field[Any, Any]", model._meta.get_field(name)) for name in columns]
    items = sorted(rows.items())
    merge = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
        f"{a} = {table}.{a} + excluded.{a}" for a in amounts
    )
    if connection.vendor == "postgresql":
        types = [_PG_TYPES[field.get_internal_type()] for field in fields]
        source = ", ".join(f"%s::{pg_type}[]" for pg_type in types)
        arrays = [list(column) for column in zip(*((*k, *v) for k, v in items), strict=True)]
        with server_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({source})"
                + merge,
                arrays,
            )
        return
    with connection.cursor() as cursor:
        for start in range(0, len(items), UPSERT_BATCH):
            chunk = items[start : start + UPSERT_BATCH]
            placeholders = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(chunk))
            params = [
                field.get_db_prep_value(value, connection)
                for key, values in chunk
                for field, value in zip(fields, (*key, *values), strict=True)
            ]
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {placeholders}" + merge,
                params,
            )


def _on_behalf_of(run_ids: set[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not run_ids:
        return {}
    return {
        pk: person
        for pk, person in Run.objects.filter(pk__in=run_ids, on_behalf_of__isnull=False)
        .values_list("pk", "on_behalf_of_id")
        .iterator()
    }


def _runs_merge(runs: dict[uuid.UUID, list[Any]]) -> None:
    """Add spend to each run's row; where the run was counted as a task already, to its task
    row too (a late span), so the task rollup always equals its runs."""
    if not runs:
        return
    table = RunCost._meta.db_table
    merge = (
        f" ON CONFLICT (run_id) DO UPDATE SET cost_usd = {table}.cost_usd + excluded.cost_usd,"
        f" calls = {table}.calls + excluded.calls"
        " RETURNING run_id, counted_state, counted_outcome, counted_day, department_id,"
        " environment"
    )
    columns = "run_id, agent_id, department_id, team_id, environment, cost_usd, calls"
    items = sorted(runs.items())
    if connection.vendor == "postgresql":  # every run of the export in one statement
        arrays = [[run_id for run_id, _ in items]] + [
            [held[i] for _, held in items] for i in range(6)
        ]
        with server_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({columns}, counted_state, counted_outcome)"
                " SELECT *, '', '' FROM unnest(%s::uuid[], %s::bigint[], %s::bigint[],"
                " %s::bigint[], %s::varchar[], %s::numeric[], %s::bigint[])" + merge,
                arrays,
            )
            merged = cursor.fetchall()
    else:
        run_field = RunCost._meta.get_field("run_id")
        merged = []
        with connection.cursor() as cursor:
            for run_id, (agent, department, team, environment, cost, calls) in items:
                cursor.execute(
                    f"INSERT INTO {table} ({columns}, counted_state, counted_outcome)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, '', '')" + merge,
                    [
                        run_field.get_db_prep_value(run_id, connection),
                        agent, department, team, environment,
                        connection.ops.adapt_decimalfield_value(cost, 18, 6), calls,
                    ],
                )  # fmt: skip
                merged.append((run_id, *cursor.fetchone()[1:]))
    late: dict[tuple[Any, ...], list[Any]] = {}
    for run_id, state, outcome, day, department, environment in merged:
        if state:  # counted as a task already: this spend is late, and counts there too
            key = (_as_date(day), department, environment, state, outcome)
            _add(late, key, 0, runs[uuid.UUID(str(run_id))][4])
    _upsert(TaskCostDaily, late, ("runs", "cost_usd"))


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


# --- counting ended runs as tasks (the minute job) ---------------------------------------------


def finished_runs_count(*, now: datetime | None = None) -> int:
    """Count the runs that ended since the last call into :class:`TaskCostDaily`, each once.

    Idempotent (Celery may run it twice at once): a run is claimed by the conditional update of
    its ``RunCost`` row, so only one caller adds it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        cursor, _ = RollupCursor.objects.select_for_update().get_or_create(
            name=FINISHED_RUNS_CURSOR, defaults={"position": now - FINISHED_RUNS_MARGIN}
        )
        ended = list(
            Run.objects.filter(
                ended_at__gte=cursor.position - FINISHED_RUNS_MARGIN, ended_at__lte=now
            )
            .exclude(state=RunState.RUNNING)
            .exclude(pk__in=RunCost.objects.exclude(counted_state="").values("run_id"))
            .order_by("ended_at")
            .values_list(
                "pk", "agent_id", "agent__department_id", "agent__team_id", "environment",
                "state", "outcome", "ended_at",
            )[:FINISHED_RUNS_BATCH]
        )  # fmt: skip
        counted = _count(ended)
        if ended:
            cursor.position = max(cursor.position, ended[-1][-1] or cursor.position)
            cursor.save(update_fields=["position"])
    return counted


def _count(ended: Iterable[tuple[Any, ...]]) -> int:
    tasks: dict[tuple[Any, ...], list[Any]] = {}
    table = RunCost._meta.db_table
    run_field = RunCost._meta.get_field("run_id")
    counted = 0
    with connection.cursor() as cursor:
        for pk, agent, department, team, environment, state, outcome, ended_at in ended:
            run_id = run_field.get_db_prep_value(pk, connection)
            cursor.execute(
                f"INSERT INTO {table} (run_id, agent_id, department_id, team_id, environment,"
                " cost_usd, calls, counted_state, counted_outcome)"
                " VALUES (%s, %s, %s, %s, %s, 0, 0, '', '') ON CONFLICT (run_id) DO NOTHING",
                [run_id, agent, department or 0, team or 0, environment],
            )
            day = ended_at.date()
            cursor.execute(
                f"UPDATE {table} SET counted_state = %s, counted_outcome = %s, counted_day = %s"
                " WHERE run_id = %s AND counted_state = ''"
                " RETURNING department_id, environment, cost_usd",
                [state, outcome, day, run_id],
            )
            claimed = cursor.fetchone()
            if claimed is None:  # another worker counted it
                continue
            department, environment, cost = claimed
            key = (day, department, environment, state, outcome)
            _add(tasks, key, 1, Decimal(str(cost)))
            counted += 1
    _upsert(TaskCostDaily, tasks, ("runs", "cost_usd"))
    return counted
