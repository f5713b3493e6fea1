"""Celery jobs of drift detection: the cycle (every DRIFT_CYCLE_SECONDS, docs/drift.md#the-job)
and the notices of its alerts."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import transaction

from apps.approvals.tasks import DELIVERY_TASK_OPTIONS, carry_request_id, send_or_give_up
from apps.common.request_context import get_request_id


@shared_task(name="drift.cycle", ignore_result=True, soft_time_limit=240, time_limit=290)
def cycle() -> int:
    """Sample ended runs, advance baselines, detect, record alerts; how many were raised."""
    from .services import drift_cycle

    with carry_request_id(""):  # one id for the cycle's audit events and the notices it queues
        return len(drift_cycle().raised)


# --- notices of alerts (apps/drift/notify.py) ------------------------------------------------
# A notice is unique per (alert, event, kind, target) and claimed by a conditional UPDATE, so
# planning twice or Celery delivering a task twice sends nothing twice. Retries are the
# approvals deliveries'.


def queue_drift_notices(alert_id: int, event: str) -> None:
    """Plan the notices of one event (raised, critical) of a committed alert and queue a task
    for each, once they are committed. Runs in the alert's after-commit step."""
    from . import notify

    request_id = get_request_id()
    with transaction.atomic():
        for notice_id in notify.drift_notices_plan(alert_id=alert_id, event=event):

            def queue_notice(notice_id: int = notice_id) -> None:  # named: robust logs it
                drift_notify.delay(notice_id, request_id=request_id)

            transaction.on_commit(queue_notice, robust=True)


@shared_task(name="drift.alert_notify", soft_time_limit=90, time_limit=120, **DELIVERY_TASK_OPTIONS)
def drift_notify(self: Task, notice_id: int, request_id: str = "") -> bool:
    """Send one notice of a drift alert (an owner's or admin's email, a channel's message). A
    retryable failure is retried with backoff; after the last retry the notice is given up,
    its error kept."""
    from . import notify

    return send_or_give_up(
        self,
        request_id,
        lambda: notify.drift_notice_send(notice_id=notice_id),
        lambda: notify.drift_notice_give_up(notice_id=notice_id),
    )
