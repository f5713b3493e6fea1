"""Celery jobs of the costs app: the rollups' minute job, and the monthly budget alerts with
their notices (apps/costs/alerts.py)."""

from __future__ import annotations

from celery import Task, shared_task
from django.db import transaction

from apps.approvals.tasks import DELIVERY_TASK_OPTIONS, carry_request_id, send_or_give_up
from apps.common.request_context import get_request_id


@shared_task(
    name="costs.count_finished_runs", ignore_result=True, soft_time_limit=50, time_limit=60
)
def count_finished_runs() -> int:
    """Count the runs that ended since the last tick as tasks (apps/costs/rollups.py)."""
    from .rollups import finished_runs_count

    return finished_runs_count()


# --- monthly budget alerts (apps/costs/alerts.py) ----------------------------------------------
# The check is idempotent (an alert is unique per budget, month and threshold, and only the
# worker that recorded one announces it); the notices are claimed by a conditional UPDATE, so
# Celery delivering a task twice sends nothing twice. Retries are the approvals deliveries'.


@shared_task(name="costs.budget_alerts", ignore_result=True, soft_time_limit=50, time_limit=60)
def budget_alerts() -> int:
    """Record the monthly budget thresholds crossed since the last tick and have them
    announced; how many alerts were recorded."""
    from .alerts import budget_alerts_check

    with carry_request_id(""):  # one id for the tick's audit events and the notices it queues
        return len(budget_alerts_check())


def queue_alert_notices(alert_id: int) -> None:
    """Plan the notices of a committed alert and queue a task for each, once they are
    committed. Runs in the alert's after-commit step (and for an alert whose planning was
    lost, in a later check)."""
    from . import alerts

    request_id = get_request_id()
    with transaction.atomic():
        for notice_id in alerts.alert_notices_plan(alert_id=alert_id):

            def queue_notice(notice_id: int = notice_id) -> None:  # named: robust logs it
                budget_alert_notify.delay(notice_id, request_id=request_id)

            transaction.on_commit(queue_notice, robust=True)


@shared_task(
    name="costs.budget_alert_notify", soft_time_limit=90, time_limit=120, **DELIVERY_TASK_OPTIONS
)
def budget_alert_notify(self: Task, notice_id: int, request_id: str = "") -> bool:
    """Send one notice of a budget alert (a finance person's email, a channel's message). A
    retryable failure is retried with backoff; after the last retry the notice is given up,
    its error kept."""
    from . import alerts

    return send_or_give_up(
        self,
        request_id,
        lambda: alerts.alert_notice_send(notice_id=notice_id),
        lambda: alerts.alert_notice_give_up(notice_id=notice_id),
    )
