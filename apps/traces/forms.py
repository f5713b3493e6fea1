"""Console forms of the trace fabric."""

from __future__ import annotations

from django import forms

from apps.registry.constants import Environment

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
