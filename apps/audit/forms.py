"""The export range and the verification scope, parsed for the console and the API alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from .constants import ExportFormat
from .selectors import ExportRange

MAX_ID = 2**63 - 1
_TIME_HELP = "ISO 8601, UTC unless it carries an offset, e.g. 2026-01-31T09:30:00Z"


class UtcDateTimeField(forms.DateTimeField):
    """ISO 8601; a time without an offset is UTC (not the server's TIME_ZONE), a date is its
    midnight."""

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            parsed = value
        else:
            try:
                parsed = datetime.fromisoformat(str(value).strip())
            except ValueError:
                raise ValidationError(
                    f"{str(value)[:40]!r} is not a date and time: use {_TIME_HELP} "
                    "(in a URL, write + as %2B).",
                    code="invalid",
                ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ExportForm(forms.Form):
    """``format``, and an inclusive range by event id and/or time (ISO 8601; UTC if no offset)."""

    format = forms.ChoiceField(choices=ExportFormat.choices, initial=ExportFormat.JSONL)
    from_id = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, label="From event id"
    )
    to_id = forms.IntegerField(required=False, min_value=1, max_value=MAX_ID, label="To event id")
    since = UtcDateTimeField(
        required=False,
        label="Since (UTC)",
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"
        ),
    )
    until = UtcDateTimeField(
        required=False,
        label="Until (UTC)",
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"
        ),
    )

    def __init__(self, data: Any = None, **kwargs: Any) -> None:
        if data is not None and not data.get("format"):
            data = data.copy()
            data["format"] = ExportFormat.JSONL  # the default when none is asked for
        super().__init__(data, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        from_id, to_id = cleaned.get("from_id"), cleaned.get("to_id")
        if from_id is not None and to_id is not None and from_id > to_id:
            self.add_error("to_id", "The range ends before it starts: make to_id at least from_id.")
        since, until = cleaned.get("since"), cleaned.get("until")
        if since is not None and until is not None and since > until:
            self.add_error("until", "The range ends before it starts: make until later than since.")
        return cleaned

    def export_format(self) -> str:
        return str(self.cleaned_data["format"])

    def bounds(self) -> ExportRange:
        data = self.cleaned_data
        return ExportRange(
            from_id=data.get("from_id"),
            to_id=data.get("to_id"),
            since=data.get("since"),
            until=data.get("until"),
        )

    def error_message(self) -> str:
        """All errors in one line, naming the parameters (for the API and a plain 400)."""
        parts = []
        for name, errors in self.errors.items():
            text = " ".join(str(e) for e in errors)
            parts.append(text if name == "__all__" else f"{name}: {text}")
        return "; ".join(parts)


class VerifyForm(forms.Form):
    scope = forms.ChoiceField(
        choices=[
            ("all", "The whole chain"),
            ("new", "Events since the last intact verification"),
        ],
        required=False,
        initial="all",
        widget=forms.RadioSelect,
        label="Scope",
    )
