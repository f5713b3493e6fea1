"""Console forms for people: personal API tokens."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.utils import timezone

EXPIRY_CHOICES = [
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
    ("", "Never (not recommended)"),
]


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="What it is for, so you recognise it later, e.g. CI manifest apply.",
    )
    expires_in = forms.ChoiceField(
        choices=EXPIRY_CHOICES,
        required=False,
        initial="90",
        label="Expires",
        help_text="A token that expires cannot leak forever.",
    )

    def expires_at(self) -> datetime | None:
        days = self.cleaned_data.get("expires_in")
        return timezone.now() + timedelta(days=int(days)) if days else None
