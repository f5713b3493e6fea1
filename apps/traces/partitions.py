"""The day partitions of ``traces_span`` on PostgreSQL (docs/traces.md#storage).

One partition per UTC day, ``traces_span_pYYYYMMDD`` for ``[day 00:00, next day 00:00)`` UTC,
and ``traces_span_default`` (DEFAULT) for any span no day partition takes: no span is ever
refused for its date. Daily because retention is counted in days: a day past retention is
dropped whole (a catalog change, not millions of deleted rows), and a day is small enough to
scan when an environment with a shorter retention has its rows deleted from it.

Partitions are created ahead of time (:func:`partitions_ensure_ahead`, from Celery beat) and, for
a day an export carries that has none yet, on demand before its rows are written
(:func:`partitions_ensure`) -- but only for days inside the window retention keeps (and a few
days ahead, for clock skew): a span stamped decades away lands in DEFAULT rather than
creating a partition for it. A new partition is created detached and attached with
``ATTACH PARTITION``, which does not block writes to the other partitions; rows DEFAULT already
holds for that day are moved into it first (PostgreSQL refuses to attach it otherwise).

Everything here is a no-op elsewhere (SQLite keeps one plain table).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction

from .models import Span

TABLE = Span._meta.db_table
DEFAULT_PARTITION = f"{TABLE}_default"
_NAME = re.compile(rf"^{TABLE}_p(\d{{8}})$")
# Serialises partition DDL between processes (pg_advisory_xact_lock); any constant will do.
_LOCK = 0x7E7E_5A11
# DDL waits at most this long for its locks, then gives up (the next attempt will succeed):
# it must never stall ingest behind a long-running read.
LOCK_TIMEOUT = "3s"
# With retention "keep forever", on-demand partitions are made for at most this many past days.
UNBOUNDED_PAST_DAYS = 400


def is_partitioned() -> bool:
    return connection.vendor == "postgresql"


def partition_name(day: date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


@dataclass(frozen=True)
class Partition:
    name: str
    day: date

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return day_bounds(self.day)


def partition_list() -> list[Partition]:
    """The day partitions attached to the span table, oldest first (not DEFAULT)."""
    if not is_partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = [name for (name,) in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append(Partition(name, datetime.strptime(match[1], "%Y%m%d").date()))
    return sorted(found, key=lambda p: p.day)


def creatable_days(today: date) -> tuple[date, date]:
    """The first and last day that get a partition of their own when spans arrive for them."""
    from .retention import longest_retention_days

    longest = longest_retention_days()
    past = longest + 1 if longest else UNBOUNDED_PAST_DAYS
    return today - timedelta(days=past), today + timedelta(
        days=settings.TRACE_PARTITIONS_AHEAD_DAYS
    )


def missing(days: Iterable[date]) -> list[date]:
    """Which of ``days`` have no partition yet (one catalog query)."""
    wanted = sorted(set(days))
    if not wanted or not is_partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
            [[partition_name(day) for day in wanted]],
        )
        absent = {name for (name,) in cursor.fetchall()}
    return [day for day in wanted if partition_name(day) in absent]


def partitions_ensure(days: Iterable[date], *, today: date | None = None) -> list[date]:
    """Create the partitions these days lack, for the days inside the creatable window.

    Call it outside the transaction that writes the spans: the DDL takes its locks in a short
    transaction of its own. Returns the days created. A day it could not create (a lock not
    granted in time) is left to DEFAULT, which takes its spans meanwhile.
    """
    if not is_partitioned():
        return []
    first, last = creatable_days(today or datetime.now(UTC).date())
    wanted = {d for d in days if first <= d <= last and d not in _known}
    if not wanted:
        return []
    absent = missing(wanted)
    _remember(wanted.difference(absent))
    created = []
    for day in absent:
        if partition_create(day):
            created.append(day)
    _remember(created)
    return created


# Days whose partition this process knows exists: an export of today's spans checks nothing.
# Remembered only outside any transaction (as the receiver calls partitions_ensure), where what
# the catalog says, and a partition just made, is committed: one made in a transaction that
# rolls back is not remembered. Forgotten when this process drops it; another process dropping
# one (retention, for days long past) leaves an old day here, whose late spans then go to
# DEFAULT, which retention sweeps anyway.
_known: set[date] = set()


def _remember(days: Iterable[date]) -> None:
    if not connection.in_atomic_block:
        _known.update(days)


def partitions_ensure_ahead(*, today: date | None = None) -> list[date]:
    """Yesterday's, today's and the next ``TRACE_PARTITIONS_AHEAD_DAYS`` days' partitions."""
    today = today or datetime.now(UTC).date()
    days = [today + timedelta(days=n) for n in range(-1, settings.TRACE_PARTITIONS_AHEAD_DAYS + 1)]
    return partitions_ensure(days, today=today)


def _literal(moment: datetime) -> str:
    return f"'{moment.isoformat()}'"  # our own datetimes: safe to inline into DDL


def partition_create(day: date) -> bool:
    """Create and attach the partition for ``day``; False if it exists or its locks were not
    granted in time."""
    name = partition_name(day)
    start, end = day_bounds(day)
    bounds = f"start_time >= {_literal(start)} AND start_time < {_literal(end)}"
    columns = ", ".join(str(f.column) for f in Span._meta.concrete_fields)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return False
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            with transaction.atomic():
                cursor.execute(
                    f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                    " INCLUDING STORAGE INCLUDING COMPRESSION)"
                )
                # Proves the bounds, so attaching it needs no scan of it.
                cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds CHECK ({bounds})")
                cursor.execute(f"SELECT 1 FROM {DEFAULT_PARTITION} WHERE {bounds} LIMIT 1")
                if cursor.fetchone() is not None:
                    cursor.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN SHARE ROW EXCLUSIVE MODE")
                    cursor.execute(
                        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE {bounds}"
                        f" RETURNING {columns}) INSERT INTO {name} ({columns})"
                        f" SELECT {columns} FROM moved"
                    )
                cursor.execute(
                    f"ALTER TABLE {TABLE} ATTACH PARTITION {name}"
                    f" FOR VALUES FROM ({_literal(start)}) TO ({_literal(end)})"
                )
                cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_bounds")
        except Exception as exc:
            if _is_lock_timeout(exc):
                return False
            raise
    return True


def partition_drop(partition: Partition) -> bool:
    """Detach and drop one day partition; False if its locks were not granted in time."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        try:
            with transaction.atomic():
                cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
                cursor.execute(f"DROP TABLE {partition.name}")
        except Exception as exc:
            if _is_lock_timeout(exc):
                return False
            raise
    _known.discard(partition.day)
    return True


def _is_lock_timeout(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc.__cause__ or exc, psycopg.errors.LockNotAvailable)
