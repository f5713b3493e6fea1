"""Runtime housekeeping run by Celery beat."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import services
from .decisions import spool_replay
from .sealing import decisions_seal


@shared_task(name="runtime.expire_runs", ignore_result=True, time_limit=120)
def expire_runs() -> int:
    """End runs whose token lapsed without a heartbeat."""
    return services.runs_expire(now=timezone.now())


@shared_task(name="runtime.replay_decision_spool", ignore_result=True, time_limit=120)
def replay_decision_spool() -> int:
    """Move decisions spooled during a database outage into the database."""
    return spool_replay()


@shared_task(name="runtime.seal_decisions", ignore_result=True, time_limit=120)
def seal_decisions() -> int:
    """Seal the decisions recorded since the last block into the audit chain."""
    sealed = decisions_seal()
    return sealed.count if sealed else 0
