"""The audit chain verified on a schedule, so a break is found without anyone asking."""

from __future__ import annotations

import logging

from celery import shared_task

from .services import audit_chain_verify

logger = logging.getLogger(__name__)


@shared_task(name="audit.verify_chain", ignore_result=True, time_limit=3600)
def verify_chain() -> bool:
    """Recompute the whole chain as Tether itself; the result (a checkpoint when intact) shows
    on the chain page. A break is logged as an error for the operators' alerting."""
    report, _ = audit_chain_verify(actor=None)
    if report.broken is not None:
        logger.error(
            "audit chain BROKEN at event %s (seq %s, %s): %s",
            report.broken.event_id,
            report.broken.seq,
            report.broken.kind,
            report.broken.message,
        )
    return report.ok
