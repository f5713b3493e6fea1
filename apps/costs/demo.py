"""Ninety days of demo spend, so the embedded demo's finance console has history to show.

Every active demo agent runs a few tasks a day; each task's model calls are stored through the
ingest service, as an instrumented agent would send them, so spans are priced and rolled up
the way production does it. One department has a runaway day (the anomaly the console marks),
one agent calls a model no catalogue knows (charged at the worst case, and warned about), and
the busiest department gets a monthly spend budget. Loaded once: with spend recorded for past days it
changes nothing.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from apps.registry.constants import AgentStatus
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.constants import BudgetEdge, BudgetKind, BudgetScope, RunState
from apps.runtime.models import AgentCredential, Budget, Run
from apps.runtime.services import budget_create as create_budget
from apps.traces.services import spans_ingest

from .backfill import cost_rollups_rebuild
from .models import CostDaily

DEMO_DAYS = 90
DEMO_ENVIRONMENT = "prod"
MODELS = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic")]
UNPRICED_MODEL = ("in-house-llm-7", "")
OUTCOMES = ["approved", "approved", "approved", "rejected", "escalated"]


def _attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [
        KeyValue(
            key=k,
            value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v)),
        )
        for k, v in values.items()
    ]


def _nanos(when: datetime) -> int:
    return int(when.timestamp()) * 10**9 + when.microsecond * 1000


def _task_spans(
    run: Run, agent: Agent, when: datetime, calls: list[tuple[str, str, int, int]]
) -> list[PbSpan]:
    trace_id, root_id = os.urandom(16), os.urandom(8)
    spans = [
        PbSpan(
            trace_id=trace_id, span_id=root_id, name=f"invoke_agent {agent.slug}",
            start_time_unix_nano=_nanos(when),
            end_time_unix_nano=_nanos(when + timedelta(seconds=4 * len(calls))),
            attributes=_attributes({"gen_ai.operation.name": "invoke_agent", "tether.run.id": str(run.pk)}),
        )
    ]  # fmt: skip
    for i, (model, provider, tokens_in, tokens_out) in enumerate(calls):
        start = when + timedelta(seconds=4 * i)
        spans.append(
            PbSpan(
                trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
                name=f"chat {model}", start_time_unix_nano=_nanos(start),
                end_time_unix_nano=_nanos(start + timedelta(seconds=3)),
                attributes=_attributes({
                    "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                    "gen_ai.provider.name": provider, "gen_ai.usage.input_tokens": tokens_in,
                    "gen_ai.usage.output_tokens": tokens_out, "tether.run.id": str(run.pk),
                }),
            )
        )  # fmt: skip
    return spans


def _export(agent: Agent, spans: list[PbSpan]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_attributes({"service.name": agent.slug}))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def demo_costs_load(*, actor: Any, days: int = DEMO_DAYS, seed: int = 7) -> int:
    """Spend for every active demo agent over ``days`` days; returns how many runs it made (0
    when past spend is recorded already: the demo runs of today do not count)."""
    if CostDaily.objects.filter(day__lt=(timezone.now() - timedelta(days=2)).date()).exists():
        return 0
    rng = random.Random(seed)
    agents = [
        a
        for a in Agent.objects.filter(status=AgentStatus.ACTIVE)
        .select_related("department")
        .order_by("slug")
        if DEMO_ENVIRONMENT in a.environments
    ]
    if not agents:
        return 0
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    runaway = agents[0].department_id  # its agents have a runaway day, six days ago
    made = 0
    for index, agent in enumerate(agents):
        credential = AgentCredential.objects.filter(
            agent=agent, environment=DEMO_ENVIRONMENT, revoked_at__isnull=True
        ).first() or runtime.credential_issue(
            actor=actor, agent=agent, environment=DEMO_ENVIRONMENT, name="demo spend"
        )[0]  # fmt: skip
        model = MODELS[index % len(MODELS)]
        for day in range(days, -1, -1):  # to today, up to now
            date = today - timedelta(days=day)
            tasks = rng.randint(2, 4) + (10 if agent.department_id == runaway and day == 6 else 0)
            spans: list[PbSpan] = []
            ended: list[tuple[Run, datetime, str, str]] = []
            for _ in range(tasks):
                when = min(date + timedelta(hours=rng.uniform(7, 19)), now - timedelta(minutes=5))
                run, _ = runtime.run_start(
                    credential=credential, task=f"Demo task for {agent.name}"
                )
                calls = [
                    (*model, rng.randint(2_000, 60_000), rng.randint(200, 4_000))
                    for _ in range(rng.randint(1, 4))
                ]
                if index == len(agents) - 1 and rng.random() < 0.2:
                    calls.append((*UNPRICED_MODEL, 8_000, 600))
                spans += _task_spans(run, agent, when, calls)
                state: str = RunState.FINISHED if rng.random() < 0.9 else RunState.FAILED
                ended.append(
                    (run, when, state, rng.choice(OUTCOMES) if state == RunState.FINISHED else "")
                )
                made += 1
            spans_ingest(request=_export(agent, spans), credential=credential)
            for run, when, end_state, outcome in ended:
                Run.objects.filter(pk=run.pk).update(
                    state=end_state, outcome=outcome, started_at=when,
                    ended_at=when + timedelta(minutes=2),
                )  # fmt: skip
    cost_rollups_rebuild()  # count the backdated runs as tasks of their own days
    _demo_budget(actor, agents[0], now)
    return made


def _demo_budget(actor: Any, agent: Agent, now: datetime) -> None:
    """A monthly spend budget for the runaway department, near its recent pace, so the burn
    chart has a limit and a forecast to compare."""
    department = agent.department
    if Budget.objects.filter(department=department, kind=BudgetKind.SPEND).exists():
        return
    month = CostDaily.objects.filter(
        department_id=department.pk, day__gte=(now - timedelta(days=30)).date()
    ).aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    create_budget(
        actor=actor, name=f"{department.name} AI spend", kind=BudgetKind.SPEND,
        scope=BudgetScope.DEPARTMENT_MONTH, department=department, edge=BudgetEdge.STOP,
        limit=max(Decimal(50), (month * Decimal("1.1")).quantize(Decimal(1))),
    )  # fmt: skip
