from __future__ import annotations

from decimal import Decimal

from django import forms
from django.utils import timezone

from .models import PRICE_DIGITS, PRICE_PLACES


def _rate_field(label: str, *, required: bool = True) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        required=required,
        min_value=Decimal(0),
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        help_text="US dollars per million tokens.",
    )


class ModelPriceForm(forms.Form):
    model = forms.CharField(max_length=200, help_text="As agents report it, e.g. gpt-4o.")
    provider = forms.CharField(
        max_length=100, required=False, help_text="Empty: the model whoever serves it."
    )
    effective_from = forms.DateTimeField(
        initial=timezone.now,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Calls from this moment on are priced with it (UTC).",
    )
    input_per_mtok = _rate_field("Input")
    output_per_mtok = _rate_field("Output")
    cached_input_per_mtok = _rate_field("Cached input", required=False)
    note = forms.CharField(max_length=200, required=False, help_text="e.g. the agreement.")
