"""Writing model prices: an admin's negotiated rate for a model, in force from a date."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction

from apps.accounts.models import User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, Conflict, NotPermitted

from .models import PRICE_DIGITS, PRICE_PLACES, ModelPrice
from .prices import bump_prices

PRICE_MAX = Decimal(10) ** (PRICE_DIGITS - PRICE_PLACES) - 1


def _optional_rate(name: str, value: Any) -> Decimal | None:
    return None if value in (None, "") else _rate(name, value)


def _rate(name: str, value: Any) -> Decimal:
    try:
        rate = Decimal(str(value))
    except (InvalidOperation, ValueError):
        rate = Decimal(-1)
    if not rate.is_finite() or rate < 0 or rate > PRICE_MAX:
        raise ApplicationError(
            f"{name} must be a price in US dollars per million tokens, 0 to {PRICE_MAX}.",
            details={name: ["Invalid."]},
        )
    return rate.quantize(Decimal(1).scaleb(-PRICE_PLACES))


def model_price_set(
    *,
    actor: User,
    model: str,
    effective_from: datetime,
    input_per_mtok: Any,
    output_per_mtok: Any,
    cached_input_per_mtok: Any = None,
    provider: str = "",
    note: str = "",
) -> ModelPrice:
    """Record a negotiated price (admins only); every process prices with it from its date."""
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only admins set model prices.")
    model, provider = (model or "").strip(), (provider or "").strip()
    if not model or len(model) > 200 or len(provider) > 100:
        raise ApplicationError(
            "Name the model (up to 200 characters) and, optionally, its provider (up to 100).",
            details={"model": ["Required."]},
        )
    price = ModelPrice(
        model=model,
        provider=provider,
        effective_from=effective_from,
        input_per_mtok=_rate("input_per_mtok", input_per_mtok),
        output_per_mtok=_rate("output_per_mtok", output_per_mtok),
        cached_input_per_mtok=_optional_rate("cached_input_per_mtok", cached_input_per_mtok),
        note=(note or "")[:200],
        created_by=actor,
    )
    try:
        with transaction.atomic():
            price.save()
            audit_record(
                actor=Actor.user(actor),
                action="costs.price.set",
                target_type="model_price",
                target_id=price.pk,
                target_repr=str(price),
                after={
                    "model": model,
                    "provider": provider,
                    "effective_from": effective_from.isoformat(),
                    "input_per_mtok": str(price.input_per_mtok),
                    "output_per_mtok": str(price.output_per_mtok),
                    "cached_input_per_mtok": (
                        str(price.cached_input_per_mtok)
                        if price.cached_input_per_mtok is not None
                        else None
                    ),
                },
                message=note,
            )
            bump_prices()
    except IntegrityError:
        raise Conflict(
            f"{provider or 'any provider'}/{model} already has a price from that moment."
        ) from None
    return price
