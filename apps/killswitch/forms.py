from __future__ import annotations

from django import forms

from .constants import REASON_MAX, MemoryReads


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with the kill in the audit log.",
    )


class EngageForm(ReasonForm):
    memory_reads = forms.TypedChoiceField(
        label="Frozen memory stores",
        choices=MemoryReads.choices,
        initial=MemoryReads.ALLOW,
        required=False,
        empty_value=MemoryReads.ALLOW,
        help_text="Writes to them are refused until release; say whether reads go on.",
    )
