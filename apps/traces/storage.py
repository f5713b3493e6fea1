"""Writing spans: each span stored once, as fast as the database takes them.

:func:`spans_insert` takes the rows of one export and returns those it really inserted, so
that rollups (and anything else counting spans) never count a retried export twice.

On PostgreSQL the rows go straight into the partitioned table with one binary ``COPY``, inside
a savepoint: that is the common case, an export none of whose spans is stored yet, and the
cheapest way PostgreSQL has to take rows (no SQL per row, no parsing: the JSON columns are
text, apps/traces/fields.py). When an exporter retries an export that did commit (it timed out
waiting for the answer), or an export carries one span twice, the unique index
``(trace_id, span_id, start_time)`` stops that ``COPY`` at the first span already stored; the
savepoint is rolled back and the rows are staged instead: deduplicated, ``COPY`` into a
temporary table, then ``INSERT ... SELECT ... ORDER BY`` the key ``ON CONFLICT DO NOTHING
RETURNING`` the keys really inserted. Two exports carrying the same spans at once: the second
waits on the unique index for the first to commit, then stores nothing; should they lock in
opposite orders, PostgreSQL aborts one (a deadlock: the receiver answers 503, the exporter
retries).

Elsewhere (the embedded SQLite default, whose writers are serialised) the keys already stored
are read first and the rest inserted with ``bulk_create``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from uuid import UUID

import orjson
import psycopg
from django.db import connection, transaction

from .constants import INSERT_BATCH
from .models import Span

# SQLite's limit on host parameters is 32766 in current versions; stay far below it.
KEY_LOOKUP_BATCH = 300


class SpanRow(NamedTuple):
    """A span as it is stored: the columns of :class:`~apps.traces.models.Span` but ``id``,
    in the order ``COPY`` sends them. A named tuple: built with one C call per span, and it is
    the row ``COPY`` writes (once its JSON is encoded).

    ``resource`` is shared by the spans of one resource (it is encoded once per export).
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    agent_id: int | None
    agent_name: str
    credential_id: int | None
    ingest_key_id: int | None
    run_id: UUID | None
    run_ref: str
    environment: str
    service_name: str
    scope_name: str
    model: str
    provider: str
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    tool_name: str
    arguments: str
    result: str
    status: str
    status_message: str
    start_time: datetime
    end_time: datetime
    duration_ns: int
    conversation_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[dict[str, Any]]
    received_at: datetime
    cost_usd: Decimal | None
    cost_source: str

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.trace_id, self.span_id, self.start_time)


COLUMNS: tuple[str, ...] = SpanRow._fields
_JSON = {"attributes", "resource", "events"}
# PostgreSQL type of each column, for binary COPY (the formats must match the table exactly).
_PG_TYPES = {
    "agent_id": "int8",
    "credential_id": "int8",
    "ingest_key_id": "int8",
    "run_id": "uuid",
    "input_tokens": "int4",
    "output_tokens": "int4",
    "cached_tokens": "int4",
    "reasoning_tokens": "int4",
    "duration_ns": "int8",
    "start_time": "timestamptz",
    "end_time": "timestamptz",
    "received_at": "timestamptz",
    "cost_usd": "numeric",
    "arguments": "text",
    "result": "text",
    **dict.fromkeys(_JSON, "text"),  # JSON as text (apps/traces/fields.py)
}
TYPES = [_PG_TYPES.get(name, "varchar") for name in COLUMNS]
# The JSON columns are encoded with orjson (many times faster than the standard library).
_ATTRIBUTES, _EVENTS = COLUMNS.index("attributes"), COLUMNS.index("events")
assert COLUMNS[_ATTRIBUTES : _EVENTS + 1] == ("attributes", "resource", "events")

assert {f.column for f in Span._meta.concrete_fields} - {"id"} == set(COLUMNS), (
    "SpanRow must have exactly the columns of Span"
)


def dedupe(rows: list[SpanRow]) -> list[SpanRow]:
    """The first of each key (an export may carry one span twice), in key order."""
    unique = {row.key: row for row in reversed(rows)}
    return [unique[key] for key in sorted(unique)]


def spans_insert(rows: list[SpanRow]) -> list[SpanRow]:
    """Insert ``rows`` in the current transaction, skipping spans already stored (and a span
    the export carries twice). Returns the rows really inserted, each once. Call it inside
    ``transaction.atomic()``."""
    if not rows:
        return []
    if connection.vendor == "postgresql":
        return _insert_postgresql(rows)
    return _insert_portable(dedupe(rows))


# --- PostgreSQL --------------------------------------------------------------------------------


def _copy(cursor: psycopg.Cursor[Any], table: str, rows: list[SpanRow]) -> None:
    encoded: dict[int, str] = {}  # a resource is encoded once for all its spans
    dumps = orjson.dumps
    with cursor.copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(TYPES)
        write = copy.write_row
        for row in rows:
            resource = encoded.get(id(row.resource))
            if resource is None:
                resource = encoded[id(row.resource)] = dumps(row.resource).decode()
            # As str: psycopg's C dumper for text takes it as it is (bytes would go through a
            # Python-level one).
            write(
                (
                    *row[:_ATTRIBUTES],
                    dumps(row.attributes).decode(),
                    resource,
                    dumps(row.events).decode(),
                    *row[_EVENTS + 1 :],
                )
            )


def _raw_cursor() -> psycopg.Cursor[Any]:
    connection.ensure_connection()
    return connection.connection.cursor()


def _insert_postgresql(rows: list[SpanRow]) -> list[SpanRow]:
    table = Span._meta.db_table
    with connection.wrap_database_errors, _raw_cursor() as cursor:
        try:
            with transaction.atomic():
                _copy(cursor, table, rows)
            return rows
        except psycopg.errors.UniqueViolation:
            pass
        # Some of these spans are stored already (a retried export), or one is there twice.
        rows = dedupe(rows)
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {table}_stage ON COMMIT DROP AS"
            f" SELECT {', '.join(COLUMNS)} FROM {table} WITH NO DATA"
        )
        cursor.execute(f"TRUNCATE {table}_stage")
        _copy(cursor, f"{table}_stage", rows)
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(COLUMNS)})"
            f" SELECT {', '.join(COLUMNS)} FROM {table}_stage"
            " ORDER BY trace_id, span_id, start_time"
            " ON CONFLICT DO NOTHING RETURNING trace_id, span_id, start_time"
        )
        inserted = set(cursor.fetchall())
    return [row for row in rows if row.key in inserted]


# --- SQLite and the rest -------------------------------------------------------------------------


def _insert_portable(rows: list[SpanRow]) -> list[SpanRow]:
    stored: set[tuple[str, str, datetime]] = set()
    trace_ids = sorted({row.trace_id for row in rows})
    for start in range(0, len(trace_ids), KEY_LOOKUP_BATCH):
        chunk = trace_ids[start : start + KEY_LOOKUP_BATCH]
        stored.update(
            Span.objects.filter(trace_id__in=chunk).values_list("trace_id", "span_id", "start_time")
        )
    fresh = [row for row in rows if row.key not in stored]
    Span.objects.bulk_create([Span(**row._asdict()) for row in fresh], batch_size=INSERT_BATCH)
    return fresh
