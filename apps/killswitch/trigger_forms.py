"""The console form of an automatic trigger's rule. It parses input; the rule's own checks are
the service's (:func:`~apps.killswitch.trigger_services.clean_rule`), run here too so each
problem is marked on its field before anything is saved."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.accounts.models import Department
from apps.common.errors import ApplicationError
from apps.registry.models import Agent

from .constants import TriggerKind, TriggerResponse
from .models import KillTrigger
from .trigger_services import (
    NAME_MAX,
    THRESHOLD_MAX,
    WINDOW_MAX_SECONDS,
    WINDOW_MIN_SECONDS,
    clean_rule,
)


class WindowUnit:
    SECONDS = "s"
    MINUTES = "min"
    HOURS = "h"
    CHOICES = [(SECONDS, "seconds"), (MINUTES, "minutes"), (HOURS, "hours")]
    FACTOR = {SECONDS: 1, MINUTES: 60, HOURS: 3600}


def window_in_units(seconds: int) -> tuple[int, str]:
    """The largest unit that states ``seconds`` exactly: 300 -> (5, "min")."""
    for unit in (WindowUnit.HOURS, WindowUnit.MINUTES):
        if seconds % WindowUnit.FACTOR[unit] == 0:
            return seconds // WindowUnit.FACTOR[unit], unit
    return seconds, WindowUnit.SECONDS


class TriggerForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX,
        help_text="Named in the kill's reason and the audit log, e.g. “Loop guard”.",
    )
    kind = forms.ChoiceField(
        label="When",
        choices=TriggerKind.choices,
        initial=TriggerKind.DENIALS,
        help_text="Denials, budget and circuit-breaker rules are read from the decision trail "
        "every 10 s; a critical drift alert fires its rules at once.",
    )
    response = forms.ChoiceField(
        label="Then",
        choices=TriggerResponse.choices,
        initial=TriggerResponse.KILL_RUN,
        help_text="Killing ends the runs for good and blocks new ones until released; a "
        "suspended agent is refused on every step until made active again.",
    )
    threshold = forms.IntegerField(
        min_value=1,
        max_value=THRESHOLD_MAX,
        initial=1,
        help_text="How many such decisions within the window trip it, per run when the run is "
        "killed, per agent otherwise. 1 for a drift alert.",
    )
    window = forms.IntegerField(
        min_value=1,
        initial=5,
        label="Within",
        help_text="How far back to count: 10 seconds to 1 day.",
    )
    window_unit = forms.ChoiceField(
        label="Unit", choices=WindowUnit.CHOICES, initial=WindowUnit.MINUTES
    )
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.order_by("slug"),
        required=False,
        to_field_name="slug",
        empty_label="Any agent",
        help_text="Only this agent.",
    )
    department = forms.ModelChoiceField(
        queryset=Department.objects.order_by("name"),
        required=False,
        to_field_name="slug",
        empty_label="Every department",
        help_text="Only this department's agents (leave empty when you chose an agent).",
    )

    def __init__(self, *args: Any, rule: KillTrigger | None = None, **kwargs: Any) -> None:
        bound = (args[0] if args else kwargs.get("data")) is not None
        if rule is not None and not bound:
            value, unit = window_in_units(rule.window_seconds)
            kwargs["initial"] = {
                "name": rule.name,
                "kind": rule.kind,
                "response": rule.response,
                "threshold": rule.threshold,
                "window": value,
                "window_unit": unit,
                "agent": rule.agent,
                "department": rule.department,
            }
        super().__init__(*args, **kwargs)
        self.rule = rule

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "window" in data and data.get("window_unit") in WindowUnit.FACTOR:
            data["window_seconds"] = data["window"] * WindowUnit.FACTOR[data["window_unit"]]
            if not WINDOW_MIN_SECONDS <= data["window_seconds"] <= WINDOW_MAX_SECONDS:
                self.add_error("window", "From 10 seconds to 1 day.")
        if self.errors:  # the rule's own checks need every field
            return data
        try:
            data.update(clean_rule(**self.rule_fields(data), rule=self.rule))
        except ApplicationError as exc:
            apply_rule_error(self, exc)
        return data

    def rule_fields(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The cleaned fields as the services take them."""
        data = self.cleaned_data if data is None else data
        keys = ("name", "kind", "response", "threshold", "window_seconds", "agent", "department")
        return {key: data.get(key) for key in keys}


def apply_rule_error(form: forms.Form, exc: ApplicationError) -> None:
    """Put the service's problems on their fields (the window's on the window)."""
    for field, messages in (exc.details or {}).items():
        target = "window" if field == "window_seconds" else field
        for message in messages:
            form.add_error(target if target in form.fields else None, message)
    if not exc.details:
        form.add_error(None, exc.message)
