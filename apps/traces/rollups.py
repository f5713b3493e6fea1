"""Per-trace rollups, merged into :class:`~apps.traces.models.Trace` as spans are stored.

One upsert per export: the spans of the batch are summed per trace in Python, then merged
with ``INSERT ... ON CONFLICT (trace_id) DO UPDATE`` so concurrent exports of the same trace
add up instead of overwriting each other. Rows are written in trace-id order, so two exports
touching the same traces lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol, cast

from django.db import connection
from django.db.models import Field
from django.utils import timezone

from apps.common.db import server_cursor

from .constants import SpanStatus
from .models import Trace


class StoredSpan(Protocol):
    """What a rollup reads of a span: a :class:`~apps.traces.models.Span`, or the
    :class:`~apps.traces.storage.SpanRow` it was written from."""

    @property
    def trace_id(self) -> str: ...
    @property
    def parent_span_id(self) -> str: ...
    @property
    def run_id(self) -> Any: ...
    @property
    def agent_id(self) -> int | None: ...
    @property
    def agent_name(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def end_time(self) -> datetime: ...
    @property
    def status(self) -> str: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cost_usd(self) -> Decimal | None: ...


@dataclass
class _Rollup:
    run_id: object | None
    agent_id: int | None
    agent_name: str
    environment: str
    name: str
    has_root: bool
    started_at: datetime
    ended_at: datetime
    span_count: int = 0
    error_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None


def _collect(spans: Iterable[StoredSpan]) -> dict[str, _Rollup]:
    """Sum the spans per trace."""
    rollups: dict[str, _Rollup] = {}
    for span in spans:
        is_root = not span.parent_span_id
        rollup = rollups.get(span.trace_id)
        if rollup is None:
            rollup = rollups[span.trace_id] = _Rollup(
                run_id=span.run_id,
                agent_id=span.agent_id,
                agent_name=span.agent_name,
                environment=span.environment,
                name=span.name,
                has_root=is_root,
                started_at=span.start_time,
                ended_at=span.end_time,
            )
        else:
            if is_root and not rollup.has_root:
                rollup.name, rollup.has_root = span.name, True
            rollup.run_id = rollup.run_id or span.run_id
            rollup.agent_id = rollup.agent_id or span.agent_id
            rollup.agent_name = rollup.agent_name or span.agent_name
            rollup.started_at = min(rollup.started_at, span.start_time)
            rollup.ended_at = max(rollup.ended_at, span.end_time)
        rollup.span_count += 1
        rollup.error_count += span.status == SpanStatus.ERROR
        rollup.input_tokens += span.input_tokens or 0
        rollup.output_tokens += span.output_tokens or 0
        cost = span.cost_usd
        if cost is not None:
            rollup.cost_usd = (rollup.cost_usd or Decimal(0)) + cost
    return rollups


_COLUMNS = (
    "trace_id", "run_id", "agent_id", "agent_name", "environment", "name", "has_root",
    "started_at", "ended_at", "span_count", "error_count", "input_tokens", "output_tokens",
    "cost_usd", "updated_at",
)  # fmt: skip
# The foreign keys by their field name ("run"), the rest as they are.
_FIELDS: dict[str, Field[Any, Any]] = {
    name: cast(
        "Field[Any, Any]",
        Trace._meta.get_field(name if name == "trace_id" else name.removesuffix("_id")),
    )
    for name in _COLUMNS
}


# PostgreSQL types of the columns, for the arrays the upsert unnests.
_PG_TYPES = (
    "varchar", "uuid", "bigint", "varchar", "varchar", "varchar", "boolean", "timestamptz",
    "timestamptz", "integer", "integer", "bigint", "bigint", "numeric", "timestamptz",
)  # fmt: skip


def _upsert_sql(rows: int) -> str:
    """One statement for ``rows`` traces. On PostgreSQL the rows come as one array per column
    (``unnest``): a short statement whatever the number of rows, prepared once per connection,
    where a ``VALUES`` list of hundreds of placeholders is rewritten on every call."""
    table = Trace._meta.db_table
    postgresql = connection.vendor == "postgresql"
    greatest, least = ("GREATEST", "LEAST") if postgresql else ("MAX", "MIN")
    columns = ", ".join(str(_FIELDS[name].column) for name in _COLUMNS)
    if postgresql:
        # %b: arrays sent in binary, no quoting of each value.
        arrays = ", ".join(f"%b::{pg_type}[]" for pg_type in _PG_TYPES)
        source = f"SELECT * FROM unnest({arrays})"
    else:
        source = "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"] * rows)
    t = table
    return f"""
        INSERT INTO {t} ({columns}) {source}
        ON CONFLICT (trace_id) DO UPDATE SET
            run_id = COALESCE({t}.run_id, excluded.run_id),
            agent_id = COALESCE({t}.agent_id, excluded.agent_id),
            agent_name = CASE WHEN {t}.agent_name = '' THEN excluded.agent_name
                              ELSE {t}.agent_name END,
            name = CASE WHEN excluded.has_root AND NOT {t}.has_root THEN excluded.name
                        ELSE {t}.name END,
            has_root = {t}.has_root OR excluded.has_root,
            started_at = {least}({t}.started_at, excluded.started_at),
            ended_at = {greatest}({t}.ended_at, excluded.ended_at),
            span_count = {t}.span_count + excluded.span_count,
            error_count = {t}.error_count + excluded.error_count,
            input_tokens = {t}.input_tokens + excluded.input_tokens,
            output_tokens = {t}.output_tokens + excluded.output_tokens,
            cost_usd = CASE WHEN {t}.cost_usd IS NULL THEN excluded.cost_usd
                            WHEN excluded.cost_usd IS NULL THEN {t}.cost_usd
                            ELSE {t}.cost_usd + excluded.cost_usd END,
            updated_at = excluded.updated_at
    """


# Traces per statement: 15 parameters each stays far below every backend's limit.
UPSERT_BATCH = 200


def traces_merge(spans: Iterable[StoredSpan]) -> int:
    """Merge stored spans into their traces' rollups; call it in the spans' transaction.

    Pass only spans that were really inserted (a retried export's duplicates must not count
    twice). Returns how many traces were touched.
    """
    rollups = _collect(spans)
    if not rollups:
        return 0
    now = timezone.now()
    items = sorted(rollups.items())
    native = connection.vendor == "postgresql"
    with server_cursor() as cursor:
        for start in range(0, len(items), UPSERT_BATCH):
            chunk = items[start : start + UPSERT_BATCH]
            rows = [{**vars(r), "trace_id": trace_id, "updated_at": now} for trace_id, r in chunk]
            if native:  # one array per column; psycopg adapts the values itself
                params: list[Any] = [[row[name] for row in rows] for name in _COLUMNS]
            else:
                params = [
                    _FIELDS[name].get_db_prep_value(row[name], connection)
                    for row in rows
                    for name in _COLUMNS
                ]
            cursor.execute(_upsert_sql(len(chunk)), params)
    return len(rollups)
