"""The console form that adds a notification channel. It parses input and checks the target
with the service's own rule (:func:`~apps.approvals.channel_services.clean_target`), so a bad
address or URL is marked on its field before anything is saved."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.accounts.models import Department
from apps.common.errors import ApplicationError

from .channel_services import NAME_MAX, SECRET_MAX, TARGET_MAX, clean_target
from .models import ChannelKind


class ChannelForm(forms.Form):
    name = forms.CharField(
        max_length=NAME_MAX,
        help_text="What people call it, e.g. “Claims approvers” or “#approvals”.",
    )
    kind = forms.ChoiceField(choices=ChannelKind.choices, initial=ChannelKind.SLACK)
    target = forms.CharField(
        max_length=TARGET_MAX,
        label="Send to",
        help_text="Email: addresses separated by commas. Slack or webhook: the URL Tether posts to.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    secret = forms.CharField(
        required=False,
        max_length=SECRET_MAX,
        label="Signing secret",
        help_text="Generic webhooks only: keys the X-Tether-Signature HMAC. Leave empty to have "
        "one generated; it is shown once.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    department = forms.ModelChoiceField(
        queryset=Department.objects.order_by("name"),
        required=False,
        to_field_name="slug",
        empty_label="Every department",
        help_text="Only this department's requests are sent here.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, target = data.get("kind"), data.get("target")
        if kind and target:
            try:
                data["target"] = clean_target(kind, target)
            except ApplicationError as exc:
                self.add_error("target", exc.message)
        return data
