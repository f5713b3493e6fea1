"""Retention: spans (and their traces' rollups) are deleted once older than their environment
keeps them, except those under a legal hold (docs/traces.md#retention).

Settings: ``TRACE_RETENTION_DAYS`` for every environment, ``TRACE_RETENTION_DAYS_<ENV>`` for one
(0 keeps forever). The environments fall into *classes*: one per environment with its own
retention, and ``*`` for all the others.

:func:`spans_retention_apply` (Celery beat, hourly; idempotent, and one run at a time):

1. The spans of holds released since the last run are deleted where retention would already
   have deleted them (unless another active hold keeps them).
2. PostgreSQL: every day partition wholly older than the longest retention is dropped, unless
   it holds a span under an active legal hold (then its other rows are deleted, in 3).
3. Per class with a retention, the spans older than its cutoff and not held are deleted: on
   PostgreSQL partition by partition, only in the partitions that became older than the cutoff
   since the last run (:class:`~apps.traces.models.RetentionSweep`, less a margin for spans that
   arrive late), and always in DEFAULT; on SQLite in one statement. Trace rollups whose trace
   ended before the cutoff go too.

A span is held when an active hold names its trace, its run, or the run of its trace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from . import partitions
from .models import LegalHold, RetentionSweep, Span, Trace

logger = logging.getLogger(__name__)

OTHERS = "*"
# Day partitions this much older than the last sweep's cutoff are swept again: spans exported
# late (a retried batch, a collector catching up) land in days that were swept already.
LATE_MARGIN = timedelta(days=2)
# Only one retention run at a time (pg_try_advisory_lock); any constant will do.
_LOCK = 0x7E7E_0DE1


@dataclass(frozen=True)
class RetentionClass:
    """Environments kept for the same number of days. ``key`` is an environment, or ``*`` for
    every environment that has no retention of its own (``excluded`` are those)."""

    key: str
    days: int
    excluded: tuple[str, ...] = ()

    def cutoff(self, now: datetime) -> datetime:
        return now - timedelta(days=self.days)

    def q(self) -> Q:
        if self.key != OTHERS:
            return Q(environment=self.key)
        return ~Q(environment__in=self.excluded) if self.excluded else Q()

    def sql(self) -> tuple[str, list[Any]]:
        if self.key != OTHERS:
            return "s.environment = %s", [self.key]
        if not self.excluded:
            return "TRUE", []
        marks = ", ".join(["%s"] * len(self.excluded))
        return f"s.environment NOT IN ({marks})", list(self.excluded)


def retention_classes() -> list[RetentionClass]:
    overrides = dict(settings.TRACE_RETENTION_DAYS_BY_ENVIRONMENT)
    classes = [RetentionClass(key=env, days=days) for env, days in sorted(overrides.items())]
    classes.append(
        RetentionClass(
            key=OTHERS, days=settings.TRACE_RETENTION_DAYS, excluded=tuple(sorted(overrides))
        )
    )
    return classes


def longest_retention_days() -> int:
    """The longest retention in days; 0 when some environment is kept forever."""
    days = [c.days for c in retention_classes()]
    return 0 if 0 in days else max(days)


# --- what is held ----------------------------------------------------------------------------

_ACTIVE = "SELECT {column} FROM traces_legalhold WHERE released_at IS NULL AND {condition}"
# A span is held if an active hold names its trace, its run, or the run its trace belongs to.
# (Never NULL: ``NOT held`` must be true for a span that no hold names, run or no run.)
HELD_SQL = (
    "(s.trace_id IN (" + _ACTIVE.format(column="trace_id", condition="trace_id <> ''") + ")"
    " OR (s.run_id IS NOT NULL AND s.run_id IN ("
    + _ACTIVE.format(column="run_id", condition="run_id IS NOT NULL")
    + "))"
    " OR s.trace_id IN (SELECT t.trace_id FROM traces_trace t WHERE t.run_id IN ("
    + _ACTIVE.format(column="run_id", condition="run_id IS NOT NULL")
    + ")))"
)


def held_q() -> Q:
    """The same as HELD_SQL, for the ORM (spans and traces both have trace_id and run)."""
    active = LegalHold.objects.filter(released_at__isnull=True)
    runs = active.filter(run__isnull=False).values("run_id")
    return (
        Q(trace_id__in=active.exclude(trace_id="").values("trace_id"))
        | Q(run_id__in=runs)
        | Q(trace_id__in=Trace.objects.filter(run_id__in=runs).values("trace_id"))
    )


def _hold_q(hold: LegalHold) -> Q:
    """The spans (or traces) one hold names."""
    q = Q(pk__in=[])
    if hold.trace_id:
        q |= Q(trace_id=hold.trace_id)
    if hold.run_id:
        q |= Q(run_id=hold.run_id) | Q(
            trace_id__in=Trace.objects.filter(run_id=hold.run_id).values("trace_id")
        )
    return q


# --- the run ------------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    skipped: bool = False  # another run held the lock
    partitions_dropped: list[str] = field(default_factory=list)
    partitions_kept_for_holds: list[str] = field(default_factory=list)
    spans_deleted: int = 0
    traces_deleted: int = 0
    holds_swept: int = 0


@contextmanager
def _one_at_a_time() -> Iterator[bool]:
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK])
        got = bool(cursor.fetchone()[0])
    try:
        yield got
    finally:
        if got:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK])


def spans_retention_apply(*, now: datetime) -> RetentionResult:
    """Apply retention once (see the module docstring). Safe to run again at any time."""
    result = RetentionResult()
    with _one_at_a_time() as got:
        if not got:
            result.skipped = True
            return result
        classes = retention_classes()
        # Released holds first: their spans are found through their traces' rollups, which
        # the sweeps below may delete.
        _sweep_released_holds(classes, now, result)
        if partitions.is_partitioned():
            _drop_partitions(now, result)
        for retention in classes:
            if retention.days:
                _sweep(retention, now, result)
    logger.info(
        "Trace retention: %d partition(s) dropped, %d kept for legal holds, %d span(s) and"
        " %d trace(s) deleted, %d released hold(s) swept",
        len(result.partitions_dropped),
        len(result.partitions_kept_for_holds),
        result.spans_deleted,
        result.traces_deleted,
        result.holds_swept,
    )
    return result


def _drop_partitions(now: datetime, result: RetentionResult) -> None:
    longest = longest_retention_days()
    if not longest:
        return
    cutoff = now - timedelta(days=longest)
    for partition in partitions.partition_list():
        if partition.bounds[1] > cutoff:
            break
        if _partition_holds_spans(partition):
            result.partitions_kept_for_holds.append(partition.name)
        elif partitions.partition_drop(partition):
            result.partitions_dropped.append(partition.name)


def _partition_holds_spans(partition: partitions.Partition) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {partition.name} s WHERE {HELD_SQL} LIMIT 1")
        return cursor.fetchone() is not None


def _delete_spans(table: str, retention: RetentionClass, cutoff: datetime) -> int:
    """Unheld spans of the class older than ``cutoff`` in one table (partition), one statement."""
    condition, params = retention.sql()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} s WHERE {condition} AND s.start_time < %s AND NOT {HELD_SQL}",
            [*params, cutoff],
        )
        return max(cursor.rowcount, 0)


def _sweep(retention: RetentionClass, now: datetime, result: RetentionResult) -> None:
    cutoff = retention.cutoff(now)
    if partitions.is_partitioned():
        sweep = RetentionSweep.objects.filter(environments=retention.key).first()
        since = sweep.swept_before - LATE_MARGIN if sweep else None
        for partition in partitions.partition_list():
            start, end = partition.bounds
            if start >= cutoff:
                break
            if since is None or end > since:
                result.spans_deleted += _delete_spans(partition.name, retention, cutoff)
        # DEFAULT takes spans of any date, late ones too: it is always swept (it stays small).
        result.spans_deleted += _delete_spans(partitions.DEFAULT_PARTITION, retention, cutoff)
        if sweep is None or sweep.swept_before < cutoff:
            RetentionSweep.objects.update_or_create(
                environments=retention.key, defaults={"swept_before": cutoff, "updated_at": now}
            )
    else:
        with transaction.atomic():
            deleted, _ = (
                Span.objects.filter(retention.q(), start_time__lt=cutoff).exclude(held_q()).delete()
            )
        result.spans_deleted += deleted
    with transaction.atomic():
        deleted, _ = (
            Trace.objects.filter(retention.q(), started_at__lt=cutoff, ended_at__lt=cutoff)
            .exclude(held_q())
            .delete()
        )
    result.traces_deleted += deleted


def _sweep_released_holds(
    classes: list[RetentionClass], now: datetime, result: RetentionResult
) -> None:
    """What a hold kept and retention would have deleted goes once the hold is released."""
    released = LegalHold.objects.filter(released_at__isnull=False, swept_at__isnull=True)
    for hold in released:
        with transaction.atomic():
            claimed = LegalHold.objects.filter(pk=hold.pk, swept_at__isnull=True).update(
                swept_at=now
            )
            if not claimed:
                continue
            for retention in classes:
                if not retention.days:
                    continue
                cutoff = retention.cutoff(now)
                named = _hold_q(hold) & retention.q()
                deleted, _ = (
                    Span.objects.filter(named, start_time__lt=cutoff).exclude(held_q()).delete()
                )
                result.spans_deleted += deleted
                deleted, _ = (
                    Trace.objects.filter(named, started_at__lt=cutoff, ended_at__lt=cutoff)
                    .exclude(held_q())
                    .delete()
                )
                result.traces_deleted += deleted
        result.holds_swept += 1
