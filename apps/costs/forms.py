from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.utils import timezone

from apps.accounts.models import Department
from apps.registry.constants import Environment

from .dashboard import Filters
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


# --- the finance console's filters -------------------------------------------------------------

PERIODS = [
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
    ("90d", "Last 90 days"),
    ("month", "This month"),
    ("last-month", "Last month"),
    ("custom", "Custom range"),
]
DEFAULT_PERIOD = "30d"
LONGEST_RANGE_DAYS = 400


def _choices(form: forms.Form, name: str, choices: list[tuple[str, str]]) -> None:
    cast(forms.ChoiceField, form.fields[name]).choices = choices


class CostFilterForm(forms.Form):
    """Period, department and environment of the finance console (a GET form: bookmarkable)."""

    period = forms.ChoiceField(choices=PERIODS, required=False, initial=DEFAULT_PERIOD)
    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    department = forms.ChoiceField(required=False, label="Department")
    environment = forms.ChoiceField(required=False, label="Environment")

    def __init__(
        self, *args: Any, departments: list[Department], with_department: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.departments = {d.slug: d for d in departments}
        if with_department:
            _choices(
                self,
                "department",
                [("", "All departments")] + [(d.slug, d.name) for d in departments],
            )
        else:
            del self.fields["department"]
        _choices(self, "environment", [("", "All environments"), *Environment.choices])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        today = timezone.now().date()
        period = data.get("period") or DEFAULT_PERIOD
        data["period"] = period
        if period == "custom":
            start, end = data.get("start"), data.get("end")
            if start is None or end is None:
                raise forms.ValidationError("A custom range needs both a start and an end day.")
            if start > end:
                raise forms.ValidationError("The range starts after it ends: swap the days.")
            if (end - start).days + 1 > LONGEST_RANGE_DAYS:
                raise forms.ValidationError(
                    f"Ranges are at most {LONGEST_RANGE_DAYS} days; export month by month for more."
                )
        elif period == "month":
            start, end = today.replace(day=1), today
        elif period == "last-month":
            end = today.replace(day=1) - timedelta(days=1)
            start = end.replace(day=1)
        else:
            start, end = today - timedelta(days=int(period.removesuffix("d")) - 1), today
        data["start"], data["end"] = start, end
        return data

    def filters(self) -> Filters:
        data = self.cleaned_data
        return Filters(
            start=data["start"],
            end=data["end"],
            department=self.departments.get(data.get("department") or ""),
            environment=data.get("environment") or "",
        )


class ChargebackForm(forms.Form):
    month = forms.CharField(
        max_length=7, help_text="YYYY-MM", widget=forms.TextInput(attrs={"type": "month"})
    )
    department = forms.ChoiceField(required=False)
    format = forms.ChoiceField(
        choices=[("csv", "CSV"), ("json", "JSON")], initial="csv", required=False
    )

    def __init__(self, *args: Any, departments: list[Department], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.departments = {d.slug: d for d in departments}
        _choices(
            self, "department", [("", "All departments")] + [(d.slug, d.name) for d in departments]
        )

    def clean_month(self) -> date:
        value = self.cleaned_data["month"].strip()
        try:
            return date.fromisoformat(f"{value}-01")
        except ValueError:
            raise forms.ValidationError("Give the month as YYYY-MM, e.g. 2026-11.") from None
