"""Celery work after a kill: the owners' notices and the agents' safe-state actions
(apps/killswitch/notify.py).

The tasks take ids, never instances; the services they call claim their row with a
conditional UPDATE, so Celery delivering one twice sends nothing twice. Retries and backoff
are the approvals deliveries': about a quarter of an hour for a receiver to come back.
"""

from __future__ import annotations

from celery import Task, shared_task
from django.db import transaction

from apps.approvals.tasks import DELIVERY_TASK_OPTIONS, send_or_give_up
from apps.common.request_context import get_request_id

from . import notify as notices


def queue_after_kill(kill_id: int) -> None:
    """Plan the notices and safe-state actions of a committed engagement and queue a task for
    each (the safe-state calls first: they put the agents' work in a safe state). Runs in the
    engagement's after-commit step; each task is queued once the rows are committed."""
    request_id = get_request_id()
    with transaction.atomic():
        notice_ids, action_ids = notices.after_kill_plan(kill_id=kill_id)
        for action_id in action_ids:

            def queue_call(action_id: int = action_id) -> None:  # named: robust logs it
                safe_state.delay(action_id, request_id=request_id)

            transaction.on_commit(queue_call, robust=True)
        for notice_id in notice_ids:

            def queue_notice(notice_id: int = notice_id) -> None:
                notify.delay(notice_id, request_id=request_id)

            transaction.on_commit(queue_notice, robust=True)


@shared_task(name="killswitch.notify", soft_time_limit=90, time_limit=120, **DELIVERY_TASK_OPTIONS)
def notify(self: Task, notice_id: int, request_id: str = "") -> bool:
    """Send one notice (an owner's email, a channel's message). A retryable failure is
    retried with backoff; after the last retry the notice is given up, its error kept."""
    return send_or_give_up(
        self,
        request_id,
        lambda: notices.notice_send(notice_id=notice_id),
        lambda: notices.notice_give_up(notice_id=notice_id),
    )


@shared_task(
    name="killswitch.safe_state", soft_time_limit=30, time_limit=60, **DELIVERY_TASK_OPTIONS
)
def safe_state(self: Task, action_id: int, request_id: str = "") -> bool:
    """Call one agent's safe-state webhook. A retryable failure is retried with backoff;
    after the last retry the action is given up (audited), its error kept."""
    return send_or_give_up(
        self,
        request_id,
        lambda: notices.safe_state_call(action_id=action_id),
        lambda: notices.safe_state_give_up(action_id=action_id),
    )


# Automatic triggers (apps/killswitch/triggers.py): idempotent, since a rule fires under a lock
# on its row and only on a target that is not stopped already.
@shared_task(name="killswitch.triggers", ignore_result=True, soft_time_limit=50, time_limit=60)
def triggers() -> int:
    """Fire the enabled rules on what tripped them within their windows; how many fired."""
    from .triggers import triggers_evaluate

    return len(triggers_evaluate())
