from __future__ import annotations

from django import forms

from .constants import REASON_MAX


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with the kill in the audit log.",
    )
