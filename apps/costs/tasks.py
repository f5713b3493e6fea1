"""Celery jobs of the costs app."""

from __future__ import annotations

from celery import shared_task


@shared_task(
    name="costs.count_finished_runs", ignore_result=True, soft_time_limit=50, time_limit=60
)
def count_finished_runs() -> int:
    """Count the runs that ended since the last tick as tasks (apps/costs/rollups.py)."""
    from .rollups import finished_runs_count

    return finished_runs_count()
