"""Registry housekeeping run by Celery beat."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(name="registry.expire_grants", ignore_result=True, time_limit=120)
def expire_grants() -> int:
    """Revoke grants past their expiry so the registry never lists access that has ended."""
    return services.grants_expire(now=timezone.now())
