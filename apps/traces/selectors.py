"""Reads for the trace fabric, each behind the requesting user's permissions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    Exists,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Cast, Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from apps.accounts.permissions import scope_of
from apps.audit.models import AuditEvent
from apps.registry.models import Agent
from apps.runtime.constants import Disposition, RunState
from apps.runtime.models import Decision, Run

from . import timeline
from .constants import (
    FLEET_MAX,
    FLEET_RECENT_SECONDS,
    TIMELINE_API_SPANS_MAX,
    TIMELINE_SPANS_MAX,
    SpanStatus,
)
from .models import IngestKey, Span, Trace, UnregisteredAgent
from .timeline import RunTotals, Step, Timeline

BIGINT_MAX = 2**63 - 1
# Audit events about a run name it so (apps/runtime/services.py).
RUN_TARGET = "run"


def unregistered_agents(*, user: Any) -> QuerySet[UnregisteredAgent]:
    """Agents that send spans but are in nobody's registry: a finding for admins only."""
    if not scope_of(user).is_admin:
        return UnregisteredAgent.objects.none()
    return UnregisteredAgent.objects.order_by("-last_seen_at")


def spans_for_user(*, user: Any) -> QuerySet[Span]:
    """Spans of the agents the user may read; spans of unregistered agents for admins only."""
    if scope_of(user).is_admin:
        return Span.objects.all()
    return Span.objects.filter(Q(agent__in=Agent.objects.for_user(user)))


def ingest_key_list(*, user: Any) -> QuerySet[IngestKey]:
    """Ingest keys, newest first: admins only."""
    if not scope_of(user).is_admin:
        return IngestKey.objects.none()
    return IngestKey.objects.order_by("-created_at", "-pk")


def ingest_key_get(*, user: Any, key_id: int) -> IngestKey:
    """One ingest key; for anyone but an admin, or an id that names nothing, a 404."""
    if key_id > BIGINT_MAX:
        raise Http404("No such ingest key.")
    return get_object_or_404(ingest_key_list(user=user), pk=key_id)


# --- runs, traces and their timelines (the console) ------------------------------------------


def runs_for_user(*, user: Any) -> QuerySet[Run]:
    """Runtime runs of the agents the user may read (the registry's gate)."""
    scope = scope_of(user)
    if scope.reads_everything:
        return Run.objects.all()
    if not scope.has_any_role:
        return Run.objects.none()
    # The agents' ids as constants, not a subquery: the planner then knows how many runs
    # they have, and walks the runs' started_at index instead of every run of those agents.
    agents = list(Agent.objects.for_user(user).values_list("pk", flat=True))
    return Run.objects.filter(agent_id__in=agents)


def traces_for_user(*, user: Any) -> QuerySet[Trace]:
    """Traces of the agents the user may read; those of unregistered agents for admins only
    (as for spans)."""
    scope = scope_of(user)
    if scope.is_admin:
        return Trace.objects.all()
    if scope.reads_everything:
        return Trace.objects.filter(agent__isnull=False)
    if not scope.has_any_role:
        return Trace.objects.none()
    return Trace.objects.filter(agent__in=Agent.objects.for_user(user))


def run_list(
    *,
    user: Any,
    agent: str = "",
    department: str = "",
    state: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    cost_min: Decimal | None = None,
    has_denials: bool = False,
    has_errors: bool = False,
    counting: bool = False,
) -> QuerySet[Run]:
    """Runs newest first, filtered. Nothing here groups spans: every figure comes from the
    Trace rollups, and denials and errors are EXISTS subqueries on indexed columns, so the
    database walks the runs' started_at index and stops at the page's LIMIT.

    The cost filter has two forms. For the rows, each run's traces are summed as it is
    reached (an index probe per run, stopping once the page is full); for the count
    (``counting``), the rollups are summed once, grouped by run, as a semi-join -- summing per
    run would probe every run there.
    """
    # The envelope (JSON) and the token columns are not shown: leave them in the table.
    runs = (
        runs_for_user(user=user)
        .select_related("agent")
        .defer("envelope", "token_lookup", "token_digest", "intent")
    )
    if agent:
        runs = runs.filter(agent__slug=agent)
    if department:
        runs = runs.filter(agent__department__slug=department)
    if state:
        runs = runs.filter(state=state)
    if since is not None:
        runs = runs.filter(started_at__gte=since)
    if until is not None:
        runs = runs.filter(started_at__lte=until)
    if has_denials:
        denied = Decision.objects.filter(run=OuterRef("pk"), disposition=Disposition.DENY)
        runs = runs.filter(Exists(denied))
    if has_errors:
        runs = runs.filter(Exists(Trace.objects.filter(run=OuterRef("pk"), error_count__gt=0)))
    if cost_min is not None and counting:
        # When other filters (or the user's scope) narrow the runs, only their traces are
        # summed; otherwise every trace with a run is.
        traces = Trace.objects.filter(run__isnull=False)
        if runs.query.has_filters():
            traces = Trace.objects.filter(run__in=runs.order_by().values("pk"))
        costly = (
            traces.order_by()
            .values("run")
            .annotate(cost=Sum("cost_usd"))
            .filter(cost__gte=cost_min)
            .values("run")
        )
        runs = runs.filter(pk__in=costly)
    elif cost_min is not None:
        cost = (
            Trace.objects.filter(run=OuterRef("pk"))
            .order_by()
            .values("run")
            .annotate(cost=Sum("cost_usd"))
            .values("cost")
        )
        runs = runs.alias(cost=Subquery(cost)).filter(cost__gte=cost_min)
    return runs.order_by("-started_at", "-id")


def run_totals(run_ids: list[Any]) -> dict[Any, RunTotals]:
    """Spans, errors, tokens and cost (summed over each run's Trace rollups) and decision
    counts, for a page of runs: two grouped queries, whatever the page size."""
    totals: dict[Any, RunTotals] = {pk: RunTotals() for pk in run_ids}
    if not run_ids:
        return totals
    rollups = (
        Trace.objects.filter(run_id__in=run_ids)
        .order_by()
        .values("run_id")
        .annotate(
            spans=Sum("span_count"),
            errors=Sum("error_count"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_usd"),
        )
    )
    for row in rollups:
        t = totals[row["run_id"]]
        t.spans, t.errors = row["spans"] or 0, row["errors"] or 0
        t.input_tokens, t.output_tokens = row["input_tokens"] or 0, row["output_tokens"] or 0
        t.cost_usd = row["cost"]
    counts = (
        Decision.objects.filter(run_id__in=run_ids)
        .order_by()
        .values("run_id")
        .annotate(n=Count("id"), denials=Count("id", filter=Q(disposition=Disposition.DENY)))
    )
    for count in counts:
        t = totals[count["run_id"]]
        t.decisions, t.denials = count["n"], count["denials"]
    return totals


def with_totals(runs: Iterable[Run]) -> list[Run]:
    """The runs, each with ``totals`` (a :class:`RunTotals`) attached."""
    runs = list(runs)
    totals = run_totals([r.pk for r in runs])
    for run in runs:
        run.totals = totals[run.pk]  # type: ignore[attr-defined]
    return runs


def trace_list(
    *,
    user: Any,
    agent: str = "",
    department: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    cost_min: Decimal | None = None,
    has_errors: bool = False,
) -> QuerySet[Trace]:
    """Traces that belong to no Tether run (OTLP-only agents), newest first."""
    traces = traces_for_user(user=user).filter(run__isnull=True).select_related("agent")
    if agent:
        traces = traces.filter(agent__slug=agent)
    if department:
        traces = traces.filter(agent__department__slug=department)
    if since is not None:
        traces = traces.filter(started_at__gte=since)
    if until is not None:
        traces = traces.filter(started_at__lte=until)
    if cost_min is not None:
        traces = traces.filter(cost_usd__gte=cost_min)
    if has_errors:
        traces = traces.filter(error_count__gt=0)
    return traces.order_by("-started_at", "-id")


def run_get(*, user: Any, run_id: Any) -> Run:
    """One run with what its header shows; a 404 for a run the user may not see."""
    runs = runs_for_user(user=user).select_related(
        "agent__department", "agent__team", "agent__owner", "version", "on_behalf_of",
        "parent__agent",
    )  # fmt: skip
    return get_object_or_404(runs, pk=run_id)


def trace_get(*, user: Any, trace_id: str) -> Trace:
    return get_object_or_404(traces_for_user(user=user).select_related("agent"), trace_id=trace_id)


def run_children(*, run: Run) -> list[Run]:
    return list(run.children.select_related("agent").order_by("started_at")[:50])


# Columns a timeline row needs; the payloads load with a step's details.
_HEAVY = ("attributes", "resource", "events", "arguments", "result")


def run_span_filter(run: Run) -> Q:
    """A run's spans: linked to it, or in one of its traces (child spans often carry no
    ``tether.run.id``). Two index scans (run, trace id) the database ORs together."""
    trace_ids = list(Trace.objects.filter(run=run).values_list("trace_id", flat=True))
    return Q(run=run) | Q(trace_id__in=trace_ids) if trace_ids else Q(run=run)


def run_spans(*, run: Run, after: int = 0, limit: int, light: bool = True) -> QuerySet[Span]:
    spans = Span.objects.filter(run_span_filter(run))
    if after:
        spans = spans.filter(id__gt=after).order_by("id")
    else:
        spans = spans.order_by("start_time", "id")
    if light:
        spans = spans.defer(*_HEAVY)
    return spans[:limit]


def run_decisions(*, run: Run, after: int = 0, limit: int) -> QuerySet[Decision]:
    return Decision.objects.filter(run=run, id__gt=after).order_by("id")[:limit]


def run_events(*, run: Run, after: int = 0, limit: int) -> QuerySet[AuditEvent]:
    """Audit events about the run (started, finished, killed ...), about its approval
    requests (created, approved, rejected, expired ...) and about the kill switches that
    stopped it (engaged, safe-state outcomes, released)."""
    from apps.approvals.models import ApprovalRequest
    from apps.approvals.services import APPROVAL_TARGET
    from apps.killswitch.constants import KILL_TARGET

    approvals = ApprovalRequest.objects.filter(run=run).values(
        key=Cast("pk", output_field=CharField())
    )
    kills = run.killed_by.values(key=Cast("pk", output_field=CharField()))
    about = (
        Q(target_type=RUN_TARGET, target_id=str(run.pk))
        | Q(target_type=APPROVAL_TARGET, target_id__in=Subquery(approvals))
        | Q(target_type=KILL_TARGET, target_id__in=Subquery(kills))
    )
    return AuditEvent.objects.filter(about, id__gt=after).order_by("id")[:limit]


def run_timeline(
    *, user: Any, run: Run, full: bool = False, now: datetime | None = None
) -> Timeline:
    """The run's steps in time order: every span of its traces, its decisions and the audit
    events about it, framed by the request, the agent's identity and the outcome.

    ``run`` comes from :func:`run_get` for this ``user``. The page shows at most
    ``TIMELINE_SPANS_MAX`` spans (and as many decisions); ``full`` (the JSON timeline) loads
    up to ``TIMELINE_API_SPANS_MAX`` with their payloads. A constant number of queries.
    """
    limit = TIMELINE_API_SPANS_MAX if full else TIMELINE_SPANS_MAX
    totals = run_totals([run.pk])[run.pk]
    spans = list(run_spans(run=run, limit=limit, light=not full))
    decisions = list(run_decisions(run=run, limit=limit))
    events = list(run_events(run=run, limit=limit))
    return timeline.build(
        spans=spans, decisions=decisions, events=events, run=run, totals=totals,
        spans_total=totals.spans, now=now or timezone.now(),
    )  # fmt: skip


def trace_spans(*, trace_id: str, after: int = 0, limit: int, light: bool = True) -> QuerySet[Span]:
    spans = Span.objects.filter(trace_id=trace_id)
    spans = (
        spans.filter(id__gt=after).order_by("id") if after else spans.order_by("start_time", "id")
    )
    if light:
        spans = spans.defer(*_HEAVY)
    return spans[:limit]


def trace_timeline(*, user: Any, trace: Trace, now: datetime | None = None) -> Timeline:
    """One trace's spans as a waterfall (``trace`` comes from :func:`trace_get`)."""
    spans = list(trace_spans(trace_id=trace.trace_id, limit=TIMELINE_SPANS_MAX))
    return timeline.build(spans=spans, spans_total=trace.span_count, now=now or timezone.now())


def _step_pk(step_id: str, prefix: str) -> int | None:
    number = step_id.removeprefix(prefix)
    if step_id.startswith(prefix) and number.isdigit() and int(number) <= BIGINT_MAX:
        return int(number)
    return None


def run_step(*, user: Any, run: Run, step_id: str) -> Step:
    """One step of the run's timeline with everything its details show; 404 if it is not
    the run's. ``run`` comes from :func:`run_get` for this ``user``."""
    if step_id == "request":
        return timeline.request_step(run)
    if step_id == "identity":
        return timeline.identity_step(run)
    if step_id == "outcome":
        step = timeline.outcome_step(
            run, run_totals([run.pk])[run.pk], last=run.ended_at or timezone.now()
        )
        step.error_path = run_error_path(run=run)
        return step
    if (pk := _step_pk(step_id, "span-")) is not None:
        span = Span.objects.filter(run_span_filter(run), pk=pk).first()
        if span is not None:
            return timeline.span_step(span)
    elif (pk := _step_pk(step_id, "decision-")) is not None:
        decision = Decision.objects.filter(run=run, pk=pk).first()
        if decision is not None:
            return timeline.decision_step(decision)
    elif (pk := _step_pk(step_id, "audit-")) is not None:
        event = AuditEvent.objects.filter(
            target_type=RUN_TARGET, target_id=str(run.pk), pk=pk
        ).first()
        if event is not None:
            return timeline.audit_step(event)
    raise Http404("No such step in this run.")


def run_error_path(*, run: Run, limit: int = 50) -> list[Step]:
    """What went wrong, in time order: spans with an error status, and denials."""
    spans = Span.objects.filter(run_span_filter(run), status=SpanStatus.ERROR).defer(*_HEAVY)
    denials = Decision.objects.filter(run=run, disposition=Disposition.DENY)
    steps = [timeline.span_step(s) for s in spans.order_by("start_time")[:limit]]
    steps += [timeline.decision_step(d) for d in denials.order_by("id")[:limit]]
    return sorted(steps, key=lambda s: s.start)[:limit]


def trace_step(*, user: Any, trace: Trace, step_id: str) -> Step:
    pk = _step_pk(step_id, "span-")
    span = Span.objects.filter(trace_id=trace.trace_id, pk=pk).first() if pk else None
    if span is None:
        raise Http404("No such span in this trace.")
    return timeline.span_step(span)


# --- live views ------------------------------------------------------------------------------


@dataclass
class RunProbe:
    """What a live run page checks every tick, in one query."""

    state: str
    ended_at: datetime | None
    new_decisions: int  # decisions above the page's decision floor
    new_events: int  # audit events about the run above its event floor
    span_total: int  # the spans its Trace rollups have counted


def _count_subquery(queryset: QuerySet[Any], group: str) -> Any:
    counted = queryset.order_by().values(group).annotate(n=Count("id")).values("n")
    return Coalesce(Subquery(counted), 0)


def run_probe(*, run_id: Any, decision_after: int, event_after: int) -> RunProbe | None:
    """One indexed query: the run's state, how many decisions and run events are newer than
    the floors (Decision(run, id), AuditEvent(target_type, target_id, -id)), and its span
    total from the rollups. A live page fetches rows only when these moved."""
    decisions = Decision.objects.filter(run_id=OuterRef("pk"), id__gt=decision_after)
    events = AuditEvent.objects.filter(
        target_type=RUN_TARGET, target_id=str(run_id), id__gt=event_after
    )
    spans = (
        Trace.objects.filter(run_id=OuterRef("pk"))
        .order_by()
        .values("run_id")
        .annotate(n=Sum("span_count"))
        .values("n")
    )
    row = (
        Run.objects.filter(pk=run_id)
        .annotate(
            new_decisions=_count_subquery(decisions, "run_id"),
            new_events=_count_subquery(events, "target_id"),
            span_total=Coalesce(Subquery(spans), 0),
        )
        .values("state", "ended_at", "new_decisions", "new_events", "span_total")
        .first()
    )
    return RunProbe(**row) if row is not None else None


def run_visible(*, user: Any, run_id: Any) -> bool:
    return runs_for_user(user=user).filter(pk=run_id).exists()


def trace_visible(*, user: Any, trace_id: str) -> bool:
    return traces_for_user(user=user).filter(trace_id=trace_id).exists()


def fleet_runs(*, user: Any, now: datetime | None = None) -> list[Run]:
    """The live fleet: running runs the user may see, then those that ended in the last
    ``FLEET_RECENT_SECONDS`` (so an end is seen), newest first, with their totals."""
    recent = (now or timezone.now()) - timedelta(seconds=FLEET_RECENT_SECONDS)
    runs = (
        runs_for_user(user=user)
        .filter(Q(state=RunState.RUNNING) | Q(ended_at__gte=recent))
        .select_related("agent")
        .annotate(ended=Case(When(state=RunState.RUNNING, then=0), default=1))
        .order_by("ended", "-started_at", "-id")[:FLEET_MAX]
    )
    return with_totals(runs)
