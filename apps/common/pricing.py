"""What a model call costs, and what a department has spent: the ``costs`` app's answers, for
the apps below it.

The runtime (budgets) and the trace fabric (span costs) price usage, and the runtime holds
monthly department and team budgets to what was spent, yet both sit below the ``costs`` app in
the dependency order (docs/development.md): ``costs`` owns the prices and the rollups and
registers its answers here when Django starts (apps/costs/apps.py). Nothing here knows a price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol


class PriceSource:
    OVERRIDE = "override"
    CATALOGUE = "catalogue"
    UNPRICED = "unpriced"
    TOOL = "tool"  # a tool's declared cost per call (apps/registry/tool_costs.py)


@dataclass(frozen=True, slots=True)
class Cost:
    usd: Decimal
    source: str  # PriceSource

    @property
    def priced(self) -> bool:
        return self.source != PriceSource.UNPRICED


class ModelPricer(Protocol):
    def __call__(
        self,
        *,
        model: str,
        provider: str = "",
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        at: datetime | None = None,
    ) -> Cost: ...


class MonthSpend(Protocol):
    def __call__(self, *, department_id: int, team_id: int | None = None) -> Decimal: ...


_pricer: ModelPricer | None = None
_month_spend: MonthSpend | None = None


def register(*, pricer: ModelPricer, month_spend: MonthSpend) -> None:
    global _pricer, _month_spend
    _pricer, _month_spend = pricer, month_spend


def model_cost(
    *,
    model: str,
    provider: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    at: datetime | None = None,
) -> Cost:
    """The cost of one call of ``model`` (apps/costs/prices.py says how it is found)."""
    if _pricer is None:
        raise RuntimeError("No pricer registered: is apps.costs in INSTALLED_APPS?")
    return _pricer(
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        at=at,
    )


def month_spend(*, department_id: int, team_id: int | None = None) -> Decimal:
    """What the department (or its team) has spent this calendar month, in US dollars."""
    if _month_spend is None:
        raise RuntimeError("No spend reader registered: is apps.costs in INSTALLED_APPS?")
    return _month_spend(department_id=department_id, team_id=team_id)
