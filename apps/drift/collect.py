"""Collecting the metrics of ended runs into :class:`RunSample` rows (docs/drift.md#metrics).

Each drift cycle takes the runs that ended since the newest sample (less an overlap, so a run
that ended while the last cycle ran is not missed) and at least ``DRIFT_SETTLE_SECONDS`` ago
(its last spans and decisions have arrived), and writes one sample each: end state, outcome,
latency, tokens and cost (from the run's traces), governed tool calls and their dispositions
(from its decisions), approvals decided and rejected, and its custom metric values. Inserting
ignores samples already there, so two workers, or a cycle run twice, write each run once.

On PostgreSQL one statement samples a slice of up to ``SQL_CHUNK`` runs inside the database
(the first cycle over weeks of history samples hundreds of thousands of runs, which row by row
through Python took minutes: bench/drift_job.py); elsewhere the runs are read and their
samples built in Python, ``CHUNK`` at a time. Both write the same samples.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from apps.approvals.constants import ApprovalStatus
from apps.approvals.models import ApprovalRequest
from apps.common.errors import ApplicationError
from apps.runtime.constants import Action, Disposition, RunState
from apps.runtime.models import Decision, Run
from apps.traces.models import Trace
from apps.traces.storage import SpanRow

from .constants import METRIC_NAME_PATTERN, SPAN_METRIC_PREFIX
from .models import RunMetric, RunSample

OVERLAP = timedelta(minutes=10)
CHUNK = 2_000
SQL_CHUNK = 500_000  # runs a statement samples: a bounded transaction, its temp files and memory
_METRIC_NAME = re.compile(METRIC_NAME_PATTERN)
DECIDED = (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.CHANGES_REQUESTED)


def samples_collect(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Write the samples of runs ended since the last cycle; how many were written."""
    now = now or timezone.now()
    limit = limit or settings.DRIFT_COLLECT_BATCH
    settled = now - timedelta(seconds=settings.DRIFT_SETTLE_SECONDS)
    newest = RunSample.objects.aggregate(newest=Max("ended_at"))["newest"]
    since = newest - OVERLAP if newest else now - timedelta(days=settings.DRIFT_LOOKBACK_DAYS)
    if connection.vendor == "postgresql":
        return _collect_in_database(since, settled, limit)
    return _collect_in_python(since, settled, limit)


def _collect_in_python(since: datetime, settled: datetime, limit: int) -> int:
    runs = (
        Run.objects.filter(ended_at__gt=since, ended_at__lte=settled)
        .exclude(state=RunState.RUNNING)
        .order_by("ended_at")
        .values_list(
            "id",
            "agent_id",
            "version_id",
            "environment",
            "started_at",
            "ended_at",
            "state",
            "outcome",
        )
    )
    written = 0
    batch: list[tuple[Any, ...]] = []
    for run in runs.iterator(chunk_size=CHUNK):
        batch.append(run)
        if len(batch) == CHUNK:
            written += _write_samples(batch)
            batch = []
        if written + len(batch) >= limit:
            break
    return written + (_write_samples(batch) if batch else 0)


def _write_samples(runs: Sequence[tuple[Any, ...]]) -> int:
    known = set(
        RunSample.objects.filter(run_id__in=[run[0] for run in runs]).values_list(
            "run_id", flat=True
        )
    )
    runs = [run for run in runs if run[0] not in known]
    if not runs:
        return 0
    ids = [run[0] for run in runs]
    usage = _usage(ids)
    steps = _steps(ids)
    approvals = _approvals(ids)
    metrics = _metrics(ids)
    samples = []
    for run_id, agent_id, version_id, environment, started, ended, state, outcome in runs:
        tokens, cost = usage.get(run_id, (0, 0.0))
        tools, decisions, denials, asks = steps.get(run_id, ({}, 0, 0, 0))
        decided, rejected = approvals.get(run_id, (0, 0))
        samples.append(
            RunSample(
                run_id=run_id,
                agent_id=agent_id,
                version_id=version_id,
                environment=environment,
                started_at=started,
                ended_at=ended,
                failed=state != RunState.FINISHED,
                outcome=outcome,
                latency_ms=max((ended - started).total_seconds() * 1000, 0.0),
                tokens=tokens,
                cost_usd=cost,
                tool_calls=tools,
                decisions=decisions,
                denials=denials,
                asks=asks,
                approvals=decided,
                rejections=rejected,
                metrics=metrics.get(run_id, {}),
            )
        )
    RunSample.objects.bulk_create(samples, ignore_conflicts=True, batch_size=CHUNK)
    return len(samples)


def _usage(ids: list[UUID]) -> dict[UUID, tuple[int, float]]:
    rows = (
        Trace.objects.filter(run_id__in=ids)
        .values("run_id")
        .annotate(i=Sum("input_tokens"), o=Sum("output_tokens"), c=Sum("cost_usd"))
    )
    return {r["run_id"]: ((r["i"] or 0) + (r["o"] or 0), float(r["c"] or 0)) for r in rows}


def _steps(ids: list[UUID]) -> dict[UUID, tuple[dict[str, int], int, int, int]]:
    """Per run: governed tool calls per tool, and all decisions, denials and asks."""
    out: dict[UUID, Any] = defaultdict(lambda: [{}, 0, 0, 0])
    rows = (
        Decision.objects.filter(run_id__in=ids)
        .values_list("run_id", "action", "target", "disposition")
        .annotate(n=Count("id"))
    )
    for run_id, action, target, disposition, n in rows:
        entry = out[run_id]
        if action == Action.TOOL_INVOKE:
            entry[0][target] = entry[0].get(target, 0) + n
        entry[1] += n
        entry[2] += n if disposition == Disposition.DENY else 0
        entry[3] += n if disposition == Disposition.ASK else 0
    return {run_id: tuple(entry) for run_id, entry in out.items()}


def _approvals(ids: list[UUID]) -> dict[UUID, tuple[int, int]]:
    out: dict[UUID, list[int]] = defaultdict(lambda: [0, 0])
    rows = (
        ApprovalRequest.objects.filter(run_id__in=ids, status__in=DECIDED)
        .values_list("run_id", "status")
        .annotate(n=Count("id"))
    )
    for run_id, status, n in rows:
        out[run_id][0] += n
        out[run_id][1] += n if status == ApprovalStatus.REJECTED else 0
    return {run_id: (a, b) for run_id, (a, b) in out.items()}


def _metrics(ids: list[UUID]) -> dict[UUID, dict[str, float]]:
    out: dict[UUID, dict[str, float]] = defaultdict(dict)
    for run_id, name, value in RunMetric.objects.filter(run_id__in=ids).values_list(
        "run_id", "name", "value"
    ):
        out[run_id][name] = value
    return out


# --- in the database (PostgreSQL) ---------------------------------------------------------------


def _collect_in_database(since: datetime, settled: datetime, limit: int) -> int:
    """The runs after ``since``, oldest first, a slice of up to ``SQL_CHUNK`` a statement: the
    slice ends where its last run ended (the runs ending then too are in it), so the next one
    starts after it."""
    params: dict[str, Any] = {
        "settled": settled,
        "running": RunState.RUNNING,
        "finished": RunState.FINISHED,
        "tool_invoke": Action.TOOL_INVOKE,
        "deny": Disposition.DENY,
        "ask": Disposition.ASK,
        "decided": list(DECIDED),
        "rejected": ApprovalStatus.REJECTED,
    }
    bound, insert = _slice_end_sql(), _samples_sql()
    written = 0
    while written < limit:
        with transaction.atomic(), connection.cursor() as cursor:
            # For this transaction: no JIT (compiling the plan takes longer than sampling a
            # cycle's few runs); a plan made for this slice's size (psycopg prepares a statement
            # run often, and a plan cached for a few runs would serve a backlog of thousands
            # badly); floats as text exact, for the custom metrics' values.
            cursor.execute(
                "SELECT set_config('jit', 'off', true),"
                " set_config('plan_cache_mode', 'force_custom_plan', true),"
                " set_config('extra_float_digits', '1', true)"
            )
            size = min(SQL_CHUNK, limit - written)
            cursor.execute(bound, {**params, "since": since, "skip": size - 1})
            row = cursor.fetchone()
            until = row[0] if row else settled
            cursor.execute(insert, {**params, "since": since, "until": until})
            written += cursor.rowcount
        if row is None:
            break
        since = until
    return written


def _slice_end_sql() -> str:
    """When the ``skip + 1``-th run not yet sampled after ``since`` ended (none: fewer left)."""
    run, sample = Run._meta.db_table, RunSample._meta.db_table
    return f"""
        SELECT r.ended_at FROM {run} r
        WHERE r.ended_at > %(since)s AND r.ended_at <= %(settled)s AND r.state <> %(running)s
          AND NOT EXISTS (SELECT 1 FROM {sample} s WHERE s.run_id = r.id)
        ORDER BY r.ended_at OFFSET %(skip)s LIMIT 1
    """


def _samples_sql() -> str:
    """The samples of the runs that ended in (``since``, ``until``] and have none, as
    ``_write_samples`` builds them, inserted in the order the runs ended.

    Each source is joined through the slice's runs by their end, which the planner estimates
    well: hash joins over a backlog, index lookups for a cycle's few minutes. Custom metric
    values become JSON as Python writes them (an integral value keeps its ``.0``)."""
    run, sample = Run._meta.db_table, RunSample._meta.db_table
    trace, decision = Trace._meta.db_table, Decision._meta.db_table
    approval, metric = ApprovalRequest._meta.db_table, RunMetric._meta.db_table
    in_slice = "s.ended_at > %(since)s AND s.ended_at <= %(until)s"
    return f"""
        INSERT INTO {sample} (
            run_id, agent_id, version_id, environment, started_at, ended_at, failed, outcome,
            latency_ms, tokens, cost_usd, tool_calls, decisions, denials, asks, approvals,
            rejections, metrics
        )
        SELECT r.id, r.agent_id, r.version_id, r.environment, r.started_at, r.ended_at,
               r.state <> %(finished)s, r.outcome,
               greatest(extract(epoch FROM r.ended_at - r.started_at)::float8 * 1000, 0),
               coalesce(u.tokens, 0), coalesce(u.cost, 0), coalesce(d.tools, '{{}}'::jsonb),
               coalesce(d.decisions, 0), coalesce(d.denials, 0), coalesce(d.asks, 0),
               coalesce(a.decided, 0), coalesce(a.rejected, 0), coalesce(m.metrics, '{{}}'::jsonb)
        FROM {run} r
        LEFT JOIN (
            SELECT t.run_id,
                   coalesce(sum(t.input_tokens), 0) + coalesce(sum(t.output_tokens), 0) AS tokens,
                   sum(t.cost_usd)::float8 AS cost
            FROM {trace} t JOIN {run} s ON s.id = t.run_id WHERE {in_slice}
            GROUP BY t.run_id
        ) u ON u.run_id = r.id
        LEFT JOIN (
            SELECT run_id, sum(n) AS decisions, sum(denials) AS denials, sum(asks) AS asks,
                   jsonb_object_agg(target, calls) FILTER (WHERE calls > 0) AS tools
            FROM (
                SELECT x.run_id, x.target, count(*) AS n,
                       count(*) FILTER (WHERE x.disposition = %(deny)s) AS denials,
                       count(*) FILTER (WHERE x.disposition = %(ask)s) AS asks,
                       count(*) FILTER (WHERE x.action = %(tool_invoke)s) AS calls
                FROM {decision} x JOIN {run} s ON s.id = x.run_id WHERE {in_slice}
                GROUP BY x.run_id, x.target
            ) targets
            GROUP BY run_id
        ) d ON d.run_id = r.id
        LEFT JOIN (
            SELECT q.run_id, count(*) AS decided,
                   count(*) FILTER (WHERE q.status = %(rejected)s) AS rejected
            FROM {approval} q JOIN {run} s ON s.id = q.run_id
            WHERE {in_slice} AND q.status = ANY(%(decided)s)
            GROUP BY q.run_id
        ) a ON a.run_id = r.id
        LEFT JOIN (
            SELECT v.run_id, jsonb_object_agg(
                v.name,
                CASE WHEN v.value = trunc(v.value) AND abs(v.value) < 1e16
                     THEN round(v.value::text::numeric, 1) ELSE v.value::text::numeric END
            ) AS metrics
            FROM {metric} v JOIN {run} s ON s.id = v.run_id WHERE {in_slice}
            GROUP BY v.run_id
        ) m ON m.run_id = r.id
        WHERE r.ended_at > %(since)s AND r.ended_at <= %(until)s AND r.state <> %(running)s
          AND NOT EXISTS (SELECT 1 FROM {sample} k WHERE k.run_id = r.id)
        ORDER BY r.ended_at
        ON CONFLICT (run_id) DO NOTHING
    """


# --- custom metrics ------------------------------------------------------------------------------


def metric_name_check(name: Any) -> str:
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise ApplicationError(
            "A metric name is 1-60 lowercase letters, digits, dots or underscores, starting "
            "with a letter (e.g. claim_amount).",
            details={"name": ["Invalid metric name."]},
        )
    return name


def run_metrics_record(*, run: Run, values: dict[str, float]) -> int:
    """Record custom metric values for ``run`` (the last value of a name wins)."""
    now = timezone.now()
    rows = [
        RunMetric(run_id=run.pk, name=metric_name_check(name), value=value, recorded_at=now)
        for name, value in values.items()
    ]
    _upsert_metrics(rows)
    return len(rows)


def _upsert_metrics(rows: Iterable[RunMetric]) -> None:
    rows = list(rows)
    if rows:
        with transaction.atomic():
            RunMetric.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["run_id", "name"],
                update_fields=["value", "recorded_at"],
            )


def span_metrics_capture(rows: Sequence[SpanRow]) -> None:
    """Keep the ``tether.metric.<name>`` numeric attributes of freshly stored run spans (the
    ingest's transaction). Most spans carry none: the check is one pass over their keys."""
    found: dict[tuple[UUID, str], RunMetric] = {}
    for row in rows:
        if row.run_id is None:
            continue
        for key, value in row.attributes.items():
            if not key.startswith(SPAN_METRIC_PREFIX):
                continue
            name = key[len(SPAN_METRIC_PREFIX) :]
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if _METRIC_NAME.match(name) and value == value and abs(value) != float("inf"):
                found[(row.run_id, name)] = RunMetric(
                    run_id=row.run_id, name=name, value=float(value), recorded_at=row.end_time
                )
    _upsert_metrics(found.values())
