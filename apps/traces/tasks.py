"""Trace housekeeping run by Celery beat: day partitions ahead of time, and retention.

Both are idempotent (running twice does the work once: a partition that exists is not made
again, a span deleted is not there to delete) and retention takes a PostgreSQL advisory lock,
so two deliveries of it at once do not both work.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from . import partitions, retention


@shared_task(name="traces.partitions_ensure_ahead", ignore_result=True, time_limit=300)
def partitions_ensure_ahead() -> int:
    """Make the span table's day partitions for the next days (PostgreSQL; none elsewhere)."""
    return len(partitions.partitions_ensure_ahead(today=timezone.now().date()))


@shared_task(
    name="traces.retention_apply", ignore_result=True, soft_time_limit=3300, time_limit=3500
)
def retention_apply() -> dict[str, Any]:
    """Drop and delete spans past their retention, sparing those under a legal hold."""
    result = retention.spans_retention_apply(now=timezone.now())
    return {
        "skipped": result.skipped,
        "partitions_dropped": len(result.partitions_dropped),
        "partitions_kept_for_holds": len(result.partitions_kept_for_holds),
        "spans_deleted": result.spans_deleted,
        "traces_deleted": result.traces_deleted,
        "holds_swept": result.holds_swept,
    }
