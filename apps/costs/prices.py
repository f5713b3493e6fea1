"""What a model call cost, in US dollars.

In order: an admin's override for the model (``ModelPrice``, the newest in force at the call's
time; for its provider, else for the model whoever serves it); else the maintained catalogue
of the ``genai-prices`` package (its bundled snapshot: Tether never fetches prices at run time,
so upgrading the package is how the catalogue moves); else the model is **unpriced**, and
charged at the configured worst-case price (``TETHER_UNPRICED_INPUT_PER_MTOK`` and
``..._OUTPUT_PER_MTOK``) so it is never counted as free.

Tokens follow the OpenTelemetry GenAI conventions: ``input_tokens`` include the cached ones
(charged at the cached rate where the price has one), and ``output_tokens`` include the
reasoning ones (providers bill reasoning as output).

Prices are asked for on every priced span and model call, so the answer for a (provider, model)
is kept per process: overrides until an override is written (a generation bump, read from Redis
at most every second), catalogue lookups for the life of the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from django.conf import settings
from django.utils import timezone
from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelInfo, TieredPrices
from genai_prices.types import ModelPrice as CataloguePrice

from apps.common import generation
from apps.common.pricing import Cost, PriceSource

PRICES_GENERATION = "model-prices"
MILLION = Decimal(1_000_000)
CENT_FRACTIONS = Decimal("0.000001")
_ONE_MTOK = 1_000_000

__all__ = ["Cost", "PriceSource", "bump_prices", "forget_prices", "model_cost"]


@dataclass(frozen=True, slots=True)
class _Rate:
    effective_from: datetime
    input: Decimal
    output: Decimal
    cached_input: Decimal


def model_cost(
    *,
    model: str,
    provider: str = "",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_tokens: int = 0,
    at: datetime | None = None,
) -> Cost:
    """The cost of one call of ``model``; ``at`` (default now) picks the override in force."""
    cached = min(max(cached_tokens, 0), max(input_tokens, 0))
    uncached = max(input_tokens, 0) - cached
    output = max(output_tokens, 0)
    when = at or timezone.now()
    rate = _override(provider, model, when)
    if rate is not None:
        usd = (uncached * rate.input + cached * rate.cached_input + output * rate.output) / MILLION
        return Cost(usd.quantize(CENT_FRACTIONS), PriceSource.OVERRIDE)
    catalogue = _catalogue_cost(model, provider, uncached + cached, output, cached, when)
    if catalogue is not None:
        return Cost(catalogue.quantize(CENT_FRACTIONS), PriceSource.CATALOGUE)
    worst_in = Decimal(str(settings.TETHER_UNPRICED_INPUT_PER_MTOK))
    worst_out = Decimal(str(settings.TETHER_UNPRICED_OUTPUT_PER_MTOK))
    usd = ((uncached + cached) * worst_in + output * worst_out) / MILLION
    return Cost(usd.quantize(CENT_FRACTIONS), PriceSource.UNPRICED)


def _catalogue_cost(
    model: str,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    at: datetime,
) -> Decimal | None:
    found = _catalogue_model(model, provider)
    if found is None:
        return None
    price = found.get_prices(at.astimezone(UTC))
    rate = _flat_rate(price)
    if rate is None:  # tiered: the package prices it
        usage = Usage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached_tokens
        )
        return price.calc_price(usage)["total_price"]
    uncached = input_tokens - cached_tokens
    return (
        uncached * rate.input + cached_tokens * rate.cached_input + output_tokens * rate.output
    ) / MILLION


@lru_cache(maxsize=2048)
def _catalogue_model(model: str, provider: str) -> ModelInfo | None:
    """The catalogue's entry for the model (a miss raises in the package, and is slow)."""
    if not model:
        return None
    try:
        return data_snapshot.get_snapshot().find_provider_model(
            model, None, provider or None, None
        )[1]
    except LookupError:
        return None


_flat_rates: dict[int, tuple[CataloguePrice, _Rate | None]] = {}


def _flat_rate(price: CataloguePrice) -> _Rate | None:
    held = _flat_rates.get(id(price))  # the catalogue's prices live as long as the process
    if held is None or held[0] is not price:
        held = _flat_rates[id(price)] = (price, _linear(price))
    return held[1]


def _linear(price: CataloguePrice) -> _Rate | None:
    """Per-MTok rates of a price with no tiers, so a span is priced with three products: the
    package's own calculation costs some 60 µs a call, as much as storing the span. A price
    with tiers (its rate depends on the tokens) has none; the package prices each call."""
    if any(isinstance(value, TieredPrices) for value in vars(price).values()):
        return None

    def per_mtok(**tokens: int) -> Decimal:
        return price.calc_price(Usage(**tokens))["total_price"]

    return _Rate(
        effective_from=datetime.min.replace(tzinfo=UTC),
        input=per_mtok(input_tokens=_ONE_MTOK),
        output=per_mtok(output_tokens=_ONE_MTOK),
        cached_input=per_mtok(input_tokens=_ONE_MTOK, cache_read_tokens=_ONE_MTOK),
    )


# --- overrides, cached per process ------------------------------------------------------------


def _build() -> dict[tuple[str, str], list[_Rate]]:
    """(provider, model) -> its overrides, newest first."""
    from .models import ModelPrice

    table: dict[tuple[str, str], list[_Rate]] = {}
    for price in ModelPrice.objects.order_by("-effective_from"):
        cached = price.cached_input_per_mtok
        table.setdefault((price.provider, price.model), []).append(
            _Rate(
                effective_from=price.effective_from,
                input=price.input_per_mtok,
                output=price.output_per_mtok,
                cached_input=cached if cached is not None else price.input_per_mtok,
            )
        )
    return table


_overrides = generation.CachedTable(PRICES_GENERATION, _build, refresh=1.0)


def bump_prices() -> None:
    """Every process reads the overrides afresh once the current transaction commits."""
    generation.bump_on_commit(PRICES_GENERATION)


def forget_prices() -> None:
    _overrides.forget()


def _override(provider: str, model: str, at: datetime) -> _Rate | None:
    table = _overrides.get()
    for key in ((provider, model), ("", model)):
        for rate in table.get(key, ()):  # newest first
            if rate.effective_from <= at:
                return rate
    return None
