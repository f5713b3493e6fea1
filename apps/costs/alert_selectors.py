"""Reads of monthly budget alerts for the console (apps/costs/alerts.py): only the alerts of
budgets the user may read."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from apps.runtime.models import Budget

from .alerts import budget_related
from .models import BudgetAlert, BudgetAlertNotice

ALERTS_SHOWN = 20


def budget_alerts_for(*, user: Any, limit: int = ALERTS_SHOWN) -> list[BudgetAlert]:
    """The newest alerts of the budgets ``user`` may read (``Budget.objects.for_user``), each
    with the higher alert that covered it and its notices (whom it told, and how that went)."""
    notices = BudgetAlertNotice.objects.select_related("channel").order_by("pk")
    return list(
        BudgetAlert.objects.filter(budget__in=Budget.objects.for_user(user).values("pk"))
        .select_related("budget", "covered_by", *budget_related("budget__"))
        .prefetch_related(Prefetch("notices", queryset=notices))
        .order_by("-created_at", "-threshold", "-pk")[:limit]
    )
