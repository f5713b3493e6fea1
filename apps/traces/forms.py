"""Console forms of the trace fabric."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone

from apps.registry.constants import Environment
from apps.runtime.constants import RunState

from .constants import INGEST_KEY_NAME_MAX


class IngestKeyForm(forms.Form):
    name = forms.CharField(
        max_length=INGEST_KEY_NAME_MAX,
        help_text="Who sends with it, so you recognise it later, e.g. prod OTel collector.",
    )
    environment = forms.ChoiceField(
        choices=[("", "None: spans name their own"), *Environment.choices],
        required=False,
        help_text="The environment of spans that name none (deployment.environment.name).",
    )


# --- runs and traces lists -------------------------------------------------------------------

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
           "30d": timedelta(days=30)}  # fmt: skip
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]
COST_MAX = Decimal("100000000")


def _when(label: str) -> forms.DateTimeField:
    return forms.DateTimeField(
        label=label,
        required=False,
        input_formats=DATETIME_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )


class RunFilterForm(forms.Form):
    """The runs list's filters (and, without state and denials, the traces list's). Every
    field is optional; an invalid one is dropped and its error shown, never a 400."""

    agent = forms.ChoiceField(required=False, choices=())
    department = forms.ChoiceField(required=False, choices=())
    state = forms.ChoiceField(
        required=False, label="Status", choices=[("", "Any status"), *RunState.choices]
    )
    period = forms.ChoiceField(
        required=False,
        label="Started",
        choices=[
            ("", "Any time"),
            ("1h", "Last hour"),
            ("24h", "Last 24 hours"),
            ("7d", "Last 7 days"),
            ("30d", "Last 30 days"),
        ],
    )
    since = _when("From (UTC)")
    until = _when("To (UTC)")
    cost_min = forms.DecimalField(
        required=False,
        label="Cost at least (USD)",
        min_value=Decimal(0),
        max_value=COST_MAX,
        decimal_places=6,
        widget=forms.NumberInput(
            attrs={"step": "any", "inputmode": "decimal", "placeholder": "0.00"}
        ),
    )
    has_denials = forms.BooleanField(required=False, label="Has denials")
    has_errors = forms.BooleanField(required=False, label="Has errors")

    def __init__(
        self, *args: Any, agents: list[str], departments: list[tuple[str, str]],
        for_traces: bool = False, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        agent_field = self.fields["agent"]
        department_field = self.fields["department"]
        assert isinstance(agent_field, forms.ChoiceField)
        assert isinstance(department_field, forms.ChoiceField)
        agent_field.choices = [("", "Any agent"), *[(slug, slug) for slug in agents]]
        department_field.choices = [("", "Any department"), *departments]
        if for_traces:
            del self.fields["state"]
            del self.fields["has_denials"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "Must not be before “from”.")
        return cleaned

    def filters(self, *, now: datetime | None = None) -> dict[str, Any]:
        """The valid filters as the selectors take them (``period`` becomes ``since``)."""
        if not self.is_bound:
            return {}
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        found = {
            name: cleaned[name]
            for name in self.fields
            if name not in self.errors and cleaned.get(name) not in (None, "", False)
        }
        period = found.pop("period", "")
        if period:
            start = (now or timezone.now()) - PERIODS[period]
            found["since"] = max(found.get("since", start), start)
        return found
