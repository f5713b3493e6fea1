"""Reads for the finance console: every figure is summed from the cost rollups, never from raw
spans (apps/costs/rollups.py), and scoped to the departments the user may read.

Each chart comes with the table it is drawn from, so the table view, the CSV export and the
chart always say the same numbers; money is summed exactly and rounded to the cent once, at
the end, the way the chargeback export rounds it.
"""

from __future__ import annotations

import calendar
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from apps.accounts.models import Department, Team, User
from apps.accounts.permissions import scope_of
from apps.common.charts import Chart, figure
from apps.registry.models import Agent
from apps.runtime.constants import BudgetKind, BudgetScope, RunState
from apps.runtime.models import Budget, Run
from apps.runtime.selectors import budget_departments

from .models import (
    AgentCostDaily,
    CostDaily,
    DepartmentCostDaily,
    MonthCost,
    PersonCostDaily,
    RunCost,
    TaskCostDaily,
)

CENT = Decimal("0.01")
TOP_AGENTS = 10
RUNS_SHOWN = 50
UNATTRIBUTED = "Unattributed (unregistered agents)"
# Anomalies: a day costing more than the median of the days before it plus this many robust
# standard deviations (1.4826 x the median absolute deviation), and at least twice that median
# and ANOMALY_MIN_USD more: day-to-day noise of a small budget must not page finance.
ANOMALY_LOOKBACK_DAYS = 14
ANOMALY_MIN_HISTORY = 7
ANOMALY_SIGMAS = 3.0
ANOMALY_MIN_USD = Decimal("1")


def cents(value: Decimal | int | None) -> Decimal:
    return Decimal(value or 0).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Filters:
    start: date
    end: date  # inclusive
    department: Department | None = None
    environment: str = ""

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


@dataclass
class Overview:
    filters: Filters
    departments: list[Department]
    total: Decimal
    calls: int
    unpriced_total: Decimal
    unpriced_calls: int
    unpriced_models: list[str]
    charts: list[Chart]

    def chart(self, key: str) -> Chart:
        return next(c for c in self.charts if c.key == key)


# --- scope ------------------------------------------------------------------------------------


def cost_departments(*, user: User) -> list[Department]:
    """Departments whose costs the user may read (as their budgets: a role there, or an agent
    they see)."""
    return list(budget_departments(user=user))


def sees_unattributed(user: User) -> bool:
    """Spend of agents nobody registered belongs to no department: org-wide readers see it."""
    return scope_of(user).reads_everything


def _scoped(model: type[Any], user: User, filters: Filters, *, day_field: str = "day") -> Any:
    departments = [filters.department] if filters.department else cost_departments(user=user)
    ids = [d.pk for d in departments]
    if filters.department is None and sees_unattributed(user):
        ids.append(0)
    rows = model.objects.filter(
        department_id__in=ids,
        **{f"{day_field}__gte": filters.start, f"{day_field}__lte": filters.end},
    )
    if filters.environment:
        rows = rows.filter(environment=filters.environment)
    return rows


def _department_names(departments: Iterable[Department]) -> dict[int, str]:
    return {0: UNATTRIBUTED, **{d.pk: d.name for d in departments}}


# --- the overview -----------------------------------------------------------------------------


def finance_overview(*, user: User, filters: Filters) -> Overview:
    departments = cost_departments(user=user)
    names = _department_names(departments)
    spend = _scoped(DepartmentCostDaily, user, filters)
    totals = spend.aggregate(cost=Sum("cost_usd"), calls=Sum("calls"))
    unpriced = spend.filter(source="unpriced")
    unpriced_totals = unpriced.aggregate(cost=Sum("cost_usd"), calls=Sum("calls"))
    charts = [
        _over_time(user, filters, names),
        _top_agents(user, _scoped(AgentCostDaily, user, filters)),
        _by_model(spend),
        _per_task(user, filters, names),
        _by_person(user, filters),
        _budget_burn(user, filters, departments),
    ]
    return Overview(
        filters=filters,
        departments=departments,
        total=cents(totals["cost"]),
        calls=totals["calls"] or 0,
        unpriced_total=cents(unpriced_totals["cost"]),
        unpriced_calls=unpriced_totals["calls"] or 0,
        unpriced_models=sorted(set(unpriced.values_list("model", flat=True))),
        charts=charts,
    )


def _over_time(user: User, filters: Filters, names: dict[int, str]) -> Chart:
    """Cost per day per department, with anomalous days marked."""
    lookback = Filters(
        filters.start - timedelta(days=ANOMALY_LOOKBACK_DAYS), filters.end,
        filters.department, filters.environment,
    )  # fmt: skip
    per_day: dict[int, dict[date, Decimal]] = defaultdict(dict)
    for row in (
        _scoped(DepartmentCostDaily, user, lookback)
        .values("department_id", "day")
        .annotate(cost=Sum("cost_usd"))
        .order_by()
    ):
        per_day[row["department_id"]][row["day"]] = row["cost"]
    days = filters.days
    ordered = sorted(
        per_day, key=lambda d: -sum(v for day, v in per_day[d].items() if day >= filters.start)
    )
    rows, traces, marks = [], [], []
    for department in ordered:
        series = per_day[department]
        if not any(series.get(day) for day in days):
            continue
        name = names.get(department, f"Department {department}")
        values = [cents(series.get(day)) for day in days]
        traces.append(_line(name, days, values))
        for day, value in zip(days, values, strict=True):
            usual = _usual(series, day)
            anomalous = usual is not None and _is_anomaly(series.get(day, Decimal(0)), *usual)
            rows.append([day.isoformat(), name, value, "yes" if anomalous else ""])
            if anomalous:
                marks.append((day, value, name, cents(usual[0]) if usual else None))
    if marks:
        traces.append(
            {
                "type": "scatter", "mode": "markers", "name": "Anomaly",
                "x": [m[0].isoformat() for m in marks], "y": [float(m[1]) for m in marks],
                "text": [f"{m[2]}: ${m[1]} (usually ${m[3]})" for m in marks],
                "hoverinfo": "text",
                "marker": {"symbol": "circle-open", "size": 14, "color": "#c0392b", "line": {"width": 3}},
            }
        )  # fmt: skip
    chart = Chart(
        key="over-time",
        title="Cost per day by department",
        unit="US dollars per day",
        columns=["Day", "Department", "Cost (USD)", "Anomaly"],
        rows=rows,
        note=f"Anomaly: a day above the median of the {ANOMALY_LOOKBACK_DAYS} days before it "
        f"by more than {ANOMALY_SIGMAS:g} robust standard deviations, and at least double it.",
    )
    chart.figure = figure(traces, x_title="Day (UTC)", y_title="US dollars")
    return chart


def _usual(series: dict[date, Decimal], day: date) -> tuple[Decimal, Decimal] | None:
    """(median, robust spread) of the days before ``day``, if there are enough of them."""
    history = [
        series.get(day - timedelta(days=n), Decimal(0)) for n in range(1, ANOMALY_LOOKBACK_DAYS + 1)
    ]
    if sum(1 for v in history if v) < ANOMALY_MIN_HISTORY:
        return None
    median = statistics.median(history)
    spread = statistics.median(abs(v - median) for v in history) * Decimal("1.4826")
    return median, spread


def _is_anomaly(value: Decimal, median: Decimal, spread: Decimal) -> bool:
    floor = max(spread * Decimal(ANOMALY_SIGMAS), median, ANOMALY_MIN_USD)
    return value > median + floor


def _top_agents(user: User, spend: QuerySet[AgentCostDaily]) -> Chart:
    ranked = list(
        spend.values("agent_id")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .order_by("-cost")
    )
    visible = {
        pk: (name, slug)
        for pk, name, slug in Agent.objects.for_user(user)
        .filter(pk__in=[r["agent_id"] for r in ranked[: TOP_AGENTS * 3]])
        .values_list("pk", "name", "slug")
    }
    rows: list[list[Any]] = []
    others_cost, others_calls = Decimal(0), 0
    for row in ranked:
        if row["agent_id"] in visible and len(rows) < TOP_AGENTS:
            name, slug = visible[row["agent_id"]]
            rows.append([name, cents(row["cost"]), row["calls"], slug])
        else:
            others_cost += row["cost"]
            others_calls += row["calls"]
    if others_calls:
        rows.append(["Other agents", cents(others_cost), others_calls, ""])
    chart = Chart(
        key="top-agents",
        title=f"Top {TOP_AGENTS} agents by cost",
        unit="US dollars in the period",
        columns=["Agent", "Cost (USD)", "Calls", "Slug"],
        rows=rows,
        agent_slugs=[row[3] for row in rows],
    )
    bars = list(reversed(rows))
    chart.figure = figure(
        [{
            "type": "bar", "orientation": "h", "name": "Cost",
            "y": [r[0] for r in bars], "x": [float(r[1]) for r in bars],
            "customdata": [r[3] for r in bars],
            "hovertemplate": "%{y}: $%{x:,.2f}<extra></extra>",
        }],
        x_title="US dollars", y_title="", legend=False,
    )  # fmt: skip
    return chart


def _by_model(spend: QuerySet[CostDaily] | QuerySet[DepartmentCostDaily]) -> Chart:
    rows = [
        [
            r["provider"] or "(not said)", r["model"] or ("tool calls" if r["source"] == "tool" else "(not said)"),
            r["source"], cents(r["cost"]), r["calls"], r["inputs"] or 0, r["outputs"] or 0,
        ]
        for r in spend.values("provider", "model", "source")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"), inputs=Sum("input_tokens"), outputs=Sum("output_tokens"))
        .order_by("-cost")
    ]  # fmt: skip
    chart = Chart(
        key="by-model",
        title="Cost by model and provider",
        unit="US dollars in the period",
        columns=["Provider", "Model", "Priced from", "Cost (USD)", "Calls", "Input tokens", "Output tokens"],
        rows=rows,
    )  # fmt: skip
    providers = sorted({r[0] for r in rows})
    traces = []
    for provider in providers:
        mine = [r for r in rows if r[0] == provider]
        traces.append({
            "type": "bar", "name": provider,
            "x": [r[1] + (" (unpriced)" if r[2] == "unpriced" else "") for r in mine],
            "y": [float(r[3]) for r in mine],
            "hovertemplate": "%{x}: $%{y:,.2f}<extra>" + provider + "</extra>",
        })  # fmt: skip
    chart.figure = figure(traces, x_title="Model", y_title="US dollars")
    chart.figure["layout"]["xaxis"]["tickangle"] = -20
    chart.figure["layout"]["legend"]["y"] = -0.45  # below the slanted model names
    return chart


def _per_task(user: User, filters: Filters, names: dict[int, str]) -> Chart:
    """Cost per task and per successful task (a run that finished), per department."""
    per: dict[int, list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    for row in (
        _scoped(TaskCostDaily, user, filters)
        .values("department_id", "state")
        .annotate(runs=Sum("runs"), cost=Sum("cost_usd"))
        .order_by()
    ):
        held = per[row["department_id"]]
        held[0] += row["runs"]
        held[2] += row["cost"]
        if row["state"] == RunState.FINISHED:
            held[1] += row["runs"]
    rows = []
    for department, (tasks, successes, cost) in sorted(per.items(), key=lambda item: -item[1][2]):
        rows.append([
            names.get(department, f"Department {department}"), tasks, successes, cents(cost),
            cents(cost / tasks) if tasks else None,
            cents(cost / successes) if successes else None,
        ])  # fmt: skip
    chart = Chart(
        key="per-task",
        title="Cost per successful task by department",
        unit="US dollars per task",
        columns=["Department", "Tasks", "Successful", "Cost (USD)", "Per task (USD)", "Per successful task (USD)"],
        rows=rows,
        empty="No run ended in this period.",
        note="A task is a run; a successful one finished (not failed, killed or expired). "
        "Its cost is the spend of every run, so failed runs make success dearer.",
    )  # fmt: skip
    chart.figure = figure(
        [
            {"type": "bar", "name": "Per successful task", "x": [r[0] for r in rows],
             "y": [float(r[5]) if r[5] is not None else None for r in rows]},
            {"type": "bar", "name": "Per task", "x": [r[0] for r in rows],
             "y": [float(r[4]) if r[4] is not None else None for r in rows]},
        ],
        x_title="Department", y_title="US dollars per task",
    )  # fmt: skip
    return chart


def _by_person(user: User, filters: Filters) -> Chart:
    """What runs on behalf of each person cost (the people agents act for), top ten."""
    ranked = list(
        _scoped(PersonCostDaily, user, filters)
        .exclude(person_id=0)
        .values("person_id")
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .order_by("-cost")[:TOP_AGENTS]
    )
    names = {
        u.pk: u.get_full_name() or u.get_username()
        for u in User.objects.filter(pk__in=[r["person_id"] for r in ranked])
    }
    rows = [[names.get(r["person_id"], "(removed)"), cents(r["cost"]), r["calls"]] for r in ranked]
    chart = Chart(
        key="by-person",
        title="Top people agents acted for",
        unit="US dollars in the period",
        columns=["On behalf of", "Cost (USD)", "Calls"],
        rows=rows,
        empty="No run acted on anyone's behalf in this period.",
    )
    bars = list(reversed(rows))
    chart.figure = figure(
        [{
            "type": "bar", "orientation": "h", "name": "Cost",
            "y": [r[0] for r in bars], "x": [float(r[1]) for r in bars],
            "hovertemplate": "%{y}: $%{x:,.2f}<extra></extra>",
        }],
        x_title="US dollars", y_title="", legend=False,
    )  # fmt: skip
    return chart


# --- budgets ----------------------------------------------------------------------------------


def month_bounds(day: date) -> tuple[date, date]:
    return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _budget_burn(user: User, filters: Filters, departments: list[Department]) -> Chart:
    """This month's department and team spend budgets: spent so far against the limit, and
    where the month ends at its pace so far."""
    today = timezone.now().date()
    first, last = month_bounds(today)
    scope = [filters.department] if filters.department else departments
    budgets = list(
        Budget.objects.filter(kind=BudgetKind.SPEND, enabled=True)
        .filter(
            Q(scope=BudgetScope.DEPARTMENT_MONTH, department__in=scope)
            | Q(scope=BudgetScope.TEAM_MONTH, team__department__in=scope)
        )
        .select_related("department", "team__department")
        .order_by("name")
    )
    month = Filters(first, today, filters.department, filters.environment)
    # (department, team) -> day -> spend; a department's budget sums all its teams.
    daily: dict[tuple[int, int], dict[date, Decimal]] = defaultdict(dict)
    if budgets:
        wanted = {(b.team.department_id if b.team else b.department_id) or 0 for b in budgets}
        rows_q = DepartmentCostDaily.objects.filter(
            department_id__in=wanted, day__gte=first, day__lte=today
        )
        for row in (
            rows_q.values("department_id", "team_id", "day")
            .annotate(cost=Sum("cost_usd"))
            .order_by()
        ):
            daily[(row["department_id"], row["team_id"])][row["day"]] = row["cost"]
    elapsed = (today - first).days + 1
    length = (last - first).days + 1
    rows, traces = [], []
    for budget in budgets:
        if budget.team is not None:
            series = daily[(budget.team.department_id, budget.team.pk)]
            over = f"{budget.team.department.name} / {budget.team.name}"
        else:
            series = defaultdict(Decimal)
            for (department, _team), days in daily.items():
                if department == budget.department_id:
                    for day, cost in days.items():
                        series[day] += cost
            over = budget.department.name if budget.department else ""
        running, cumulative = Decimal(0), []
        for day in month.days:
            running += series.get(day, Decimal(0))
            cumulative.append(cents(running))
        forecast = cents(running / elapsed * length)
        limit = cents(budget.limit)
        used = (running / budget.limit * 100) if budget.limit else Decimal(0)
        ahead = (forecast / budget.limit * 100) if budget.limit else Decimal(0)
        rows.append([
            budget.name, over, limit, cents(running), f"{used:.0f}%", forecast, f"{ahead:.0f}%",
            budget.get_edge_display(),
        ])  # fmt: skip
        label = budget.name
        traces.append({**_line(f"{label}: spent", month.days, cumulative), "mode": "lines+markers"})
        traces.append({
            "type": "scatter", "mode": "lines", "name": f"{label}: forecast",
            "x": [today.isoformat(), last.isoformat()], "y": [float(cents(running)), float(forecast)],
            "line": {"dash": "dot"},
        })  # fmt: skip
        traces.append({
            "type": "scatter", "mode": "lines", "name": f"{label}: limit",
            "x": [first.isoformat(), last.isoformat()], "y": [float(limit), float(limit)],
            "line": {"dash": "dash", "width": 1},
        })  # fmt: skip
    chart = Chart(
        key="budget-burn",
        title=f"Budget burn, {today:%B %Y}",
        unit="US dollars spent this month",
        columns=["Budget", "Over", "Limit (USD)", "Spent (USD)", "Used", "Forecast (USD)", "Forecast use", "At the limit"],
        rows=rows,
        empty="No monthly spend budget for these departments: set one on the Budgets page.",
        note="Forecast: the month's spend so far, at its daily pace, to the month's end.",
    )  # fmt: skip
    chart.figure = figure(traces, x_title="Day (UTC)", y_title="US dollars (cumulative)")
    return chart


# --- drill-down ------------------------------------------------------------------------------


@dataclass
class AgentCosts:
    agent: Agent
    total: Decimal
    charts: list[Chart]
    runs: list[dict[str, Any]]


def agent_costs(*, user: User, agent: Agent, filters: Filters) -> AgentCosts:
    """One agent's spend (the caller checked the user may read the agent)."""
    spend = CostDaily.objects.filter(
        agent_id=agent.pk, day__gte=filters.start, day__lte=filters.end
    )
    if filters.environment:
        spend = spend.filter(environment=filters.environment)
    per_day = {
        r["day"]: r["cost"] for r in spend.values("day").annotate(cost=Sum("cost_usd")).order_by()
    }
    days = filters.days
    over_time = Chart(
        key="agent-over-time",
        title=f"{agent.name}: cost per day",
        unit="US dollars per day",
        columns=["Day", "Cost (USD)"],
        rows=[[day.isoformat(), cents(per_day.get(day))] for day in days],
    )
    over_time.figure = figure(
        [_line(agent.name, days, [r[1] for r in over_time.rows])],
        x_title="Day (UTC)", y_title="US dollars",
    )  # fmt: skip
    if not per_day:
        over_time.rows = []
    models = _by_model(spend)
    models.key = "agent-by-model"
    runs = _agent_runs(agent, filters)
    total = spend.aggregate(cost=Sum("cost_usd"))["cost"]
    return AgentCosts(agent=agent, total=cents(total), charts=[over_time, models], runs=runs)


def _agent_runs(agent: Agent, filters: Filters) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = [
        dict(run)
        for run in Run.objects.filter(
            agent=agent,
            started_at__date__gte=filters.start,
            started_at__date__lte=filters.end,
            **({"environment": filters.environment} if filters.environment else {}),
        )
        .order_by("-started_at")
        .values("pk", "task", "state", "outcome", "started_at", "environment")[:RUNS_SHOWN]
    ]
    costs = dict(
        RunCost.objects.filter(run_id__in=[r["pk"] for r in runs]).values_list("run_id", "cost_usd")
    )
    for run in runs:
        run["cost_usd"] = cents(costs.get(run["pk"]))
    return runs


# --- chargeback -------------------------------------------------------------------------------


@dataclass
class ChargebackLine:
    department: str
    team: str
    agent: str
    business_process: str
    environment: str
    provider: str
    model: str
    source: str
    calls: int
    cost_usd: Decimal  # exact, to the micro-dollar


@dataclass
class Chargeback:
    month: date
    departments: list[tuple[str, Decimal, list[ChargebackLine]]]  # name, total in cents, lines

    @property
    def total(self) -> Decimal:
        return sum((total for _, total, _ in self.departments), Decimal(0))


def chargeback(*, user: User, month: date, department: Department | None = None) -> Chargeback:
    """What each department spent in one month, line by line; each department's total is its
    exact spend rounded once to the cent (the charts round the same sums the same way)."""
    first, last = month_bounds(month)
    filters = Filters(first, last, department)
    names = _department_names(cost_departments(user=user))
    teams = dict(Team.objects.values_list("pk", "name"))
    agents = dict(Agent.objects.values_list("pk", "slug"))
    grouped: dict[int, list[ChargebackLine]] = defaultdict(list)
    for r in (
        _scoped(CostDaily, user, filters)
        .values(
            "department_id", "team_id", "agent_id", "business_process", "environment",
            "provider", "model", "source",
        )
        .annotate(cost=Sum("cost_usd"), calls=Sum("calls"))
        .order_by("department_id", "team_id", "agent_id", "environment", "provider", "model", "source")
    ):  # fmt: skip
        grouped[r["department_id"]].append(
            ChargebackLine(
                department=names.get(r["department_id"], ""), team=teams.get(r["team_id"], ""),
                agent=agents.get(r["agent_id"], "(unregistered)"),
                business_process=r["business_process"], environment=r["environment"],
                provider=r["provider"], model=r["model"], source=r["source"], calls=r["calls"],
                cost_usd=r["cost"],
            )
        )  # fmt: skip
    departments = sorted(
        (
            (names.get(pk, ""), cents(sum((line.cost_usd for line in lines), Decimal(0))), lines)
            for pk, lines in grouped.items()
        ),
        key=lambda d: d[0],
    )
    return Chargeback(month=first, departments=departments)


def department_month_total(*, department_id: int, month: date) -> Decimal:
    """A department's exact spend in one month (budgets, alerts and tests compare with it)."""
    total = MonthCost.objects.filter(
        department_id=department_id, month=month.replace(day=1)
    ).aggregate(cost=Sum("cost_usd"))["cost"]
    return total or Decimal(0)


# --- figures ----------------------------------------------------------------------------------


def _line(name: str, days: list[date], values: list[Decimal]) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": [day.isoformat() for day in days],
        "y": [float(v) for v in values],
        "hovertemplate": "%{x}: $%{y:,.2f}<extra>" + name + "</extra>",
    }
