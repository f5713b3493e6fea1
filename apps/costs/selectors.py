"""Reads of model prices (every role may read them: they explain every cost shown)."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import ModelPrice

PRICES_SHOWN = 500


def model_prices() -> QuerySet[ModelPrice]:
    return ModelPrice.objects.select_related("created_by").order_by(
        "model", "provider", "-effective_from"
    )
