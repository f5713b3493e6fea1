"""Approval housekeeping run by Celery beat: deadlines and escalations.

Both are idempotent: each request is moved by a conditional UPDATE on its status (or tier),
so two deliveries at once move it once.
"""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="approvals.expire", ignore_result=True, time_limit=60)
def expire() -> int:
    """Expire pending requests past their deadline (the agent is told "expired")."""
    return services.approvals_expire()


@shared_task(name="approvals.escalate", ignore_result=True, time_limit=60)
def escalate() -> int:
    """Raise unanswered first-tier requests to the second tier."""
    return services.approvals_escalate()


# Notifications (apps/approvals/notify.py) add their tasks below.

# They take ids, never instances; the services they call are idempotent (a delivery is claimed
# by a conditional UPDATE), so Celery delivering one twice sends nothing twice.
from collections.abc import Callable, Iterator  # noqa: E402  (this section's own imports)
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from celery import Task  # noqa: E402
from django.db import InterfaceError, OperationalError, transaction  # noqa: E402

from apps.common.request_context import get_request_id, new_request_id, set_request_id  # noqa: E402

from . import notify as notifications  # noqa: E402

# Retries wait up to 30 s, 1, 2, 4 and 8 min (full jitter): a receiver being redeployed has about
# a quarter of an hour to come back before Tether gives the delivery up.
DELIVERY_MAX_RETRIES = 5
DELIVERY_BACKOFF_SECONDS = 30
DELIVERY_BACKOFF_MAX_SECONDS = 15 * 60


@contextmanager
def carry_request_id(request_id: str) -> Iterator[None]:
    """Carry the id of the request that queued the task, so logs and audit line up."""
    before = get_request_id()
    set_request_id(request_id or new_request_id())
    try:
        yield
    finally:
        set_request_id(before)


@shared_task(
    name="approvals.notify",
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=5,
    soft_time_limit=30,
    time_limit=60,
)
def notify(approval_id: str, event: str, request_id: str = "") -> list[int]:
    """Make the deliveries of one event of one request, and queue each one not yet sent."""
    with carry_request_id(request_id):
        delivery_ids = notifications.notifications_plan(approval_id=approval_id, event=event)
        request_id = get_request_id()
        for delivery_id in delivery_ids:

            def queue(delivery_id: int = delivery_id) -> None:  # named: robust logs __qualname__
                deliver.delay(delivery_id, request_id=request_id)

            transaction.on_commit(queue, robust=True)
    return delivery_ids


# The Celery options of a task that sends one thing out (a delivery, a notice, a webhook call).
DELIVERY_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "ignore_result": True,
    "autoretry_for": (notifications.RetryableDeliveryError, OperationalError, InterfaceError),
    "retry_backoff": DELIVERY_BACKOFF_SECONDS,
    "retry_backoff_max": DELIVERY_BACKOFF_MAX_SECONDS,
    "retry_jitter": True,
    "max_retries": DELIVERY_MAX_RETRIES,
}


def send_or_give_up(
    task: Task, request_id: str, send: Callable[[], bool], give_up: Callable[[], object]
) -> bool:
    """``send()`` within a delivery task: a retryable failure is raised for Celery to retry
    with backoff, and after the last retry ``give_up()`` marks the thing given up instead."""
    with carry_request_id(request_id):
        try:
            return send()
        except notifications.RetryableDeliveryError:
            if task.request.retries >= (task.max_retries or 0):
                give_up()
                return False
            raise


@shared_task(name="approvals.deliver", soft_time_limit=90, time_limit=120, **DELIVERY_TASK_OPTIONS)
def deliver(self: Task, delivery_id: int, request_id: str = "") -> bool:
    """Send one delivery. A retryable failure (network, 5xx, 429) is retried with backoff;
    after the last retry the delivery is marked gave_up, its last error kept."""
    return send_or_give_up(
        self,
        request_id,
        lambda: notifications.delivery_send(delivery_id=delivery_id),
        lambda: notifications.delivery_give_up(delivery_id=delivery_id),
    )
