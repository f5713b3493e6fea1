"""What each tool declares one call costs, kept per process.

Span costing (apps/traces) prices every tool span from this table, so it must not cost a query
per span. The table is rebuilt when the registry changes: every registry write bumps the policy
generation (``_record_change`` in :mod:`apps.registry.services`), seen at once by the process
that wrote and by the others within ``refresh`` seconds.
"""

from __future__ import annotations

from decimal import Decimal

from apps.common.generation import CachedTable

from .models import Tool
from .services import POLICY_GENERATION


def _build() -> dict[str, Decimal]:
    return dict(
        Tool.objects.filter(cost_per_call_usd__gt=0).values_list("slug", "cost_per_call_usd")
    )


_table: CachedTable[dict[str, Decimal]] = CachedTable(POLICY_GENERATION, _build, refresh=1.0)


def tool_costs() -> dict[str, Decimal]:
    """Tool slug -> its cost per call in US dollars, for tools that declare one (> 0)."""
    return _table.get()


def forget_tool_costs() -> None:
    """Build the table again on the next call (tests)."""
    _table.forget()
