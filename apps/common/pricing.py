"""What a model call or a tool call cost, for the apps that charge it before ``costs`` sees it.

The runtime (budgets) and the trace fabric (span costs) price usage, yet both sit below the
``costs`` app in the dependency order (docs/development.md): ``costs`` owns the prices and
registers its pricer here when Django starts (apps/costs/apps.py). Nothing here knows a price.
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


_pricer: ModelPricer | None = None


def register(pricer: ModelPricer) -> None:
    global _pricer
    _pricer = pricer


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
