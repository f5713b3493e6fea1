"""Model prices an admin sets over the maintained catalogue: negotiated rates, in force from a
date (the catalogue itself is the ``genai-prices`` package, apps/costs/prices.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

PRICE_DIGITS = 12
PRICE_PLACES = 6


class ModelPrice(models.Model):
    """What one model costs, in US dollars per million tokens, from ``effective_from`` until
    the next override of the same model (and provider) takes over."""

    provider = models.CharField(
        max_length=100, blank=True, help_text="Empty: the model whoever serves it."
    )
    model = models.CharField(max_length=200)
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    output_per_mtok = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    cached_input_per_mtok = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        help_text="Empty: cached input tokens cost what input tokens cost.",
    )
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="one_price_per_moment"
            ),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0)
                & Q(output_per_mtok__gte=0)
                & (Q(cached_input_per_mtok__isnull=True) | Q(cached_input_per_mtok__gte=0)),
                name="prices_are_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model} from {self.effective_from:%Y-%m-%d}"
