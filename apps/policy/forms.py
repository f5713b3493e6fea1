"""Console forms for policies. They parse; the services (and Cedar) decide."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from apps.accounts.models import slug_validator
from apps.common.errors import ApplicationError
from apps.registry.constants import Environment

from .constants import (
    COMMENT_MAX,
    NAME_MAX,
    POLICY_TEXT_MAX,
    RESOURCE_TYPE_OF_ACTION,
    SLUG_MAX,
    Action,
)
from .evaluation import PolicyRequest
from .models import Policy, validate_policy_slug

EXAMPLE = (
    "// Refunds over 1,000 wait for a person, whichever agent asks.\n"
    'forbid(principal, action == Action::"tool.invoke", resource == Tool::"refund-issue")\n'
    "  when { context has amount && context.amount > 1000 };"
)


def _code_area(rows: int) -> forms.Textarea:
    return forms.Textarea(
        attrs={
            "class": "code",
            "rows": rows,
            "spellcheck": "false",
            "autocapitalize": "off",
            "autocomplete": "off",
            "wrap": "off",
        }
    )


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise forms.ValidationError("Text may not contain NUL characters.")
    return value


def apply_service_error(form: forms.Form, exc: ApplicationError) -> None:
    """Put a service's field messages on the form's fields (``problems`` is the structured
    copy of ``text`` for the API; it is not shown twice)."""
    said = False
    for field, messages in (exc.details or {}).items():
        if field == "problems":
            continue
        for message in [messages] if isinstance(messages, str) else list(messages or []):
            said = True
            form.add_error(field if field in form.fields else None, str(message))
    if not said:
        form.add_error(None, exc.message)


class PolicyForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX)
    slug = forms.CharField(
        max_length=SLUG_MAX,
        validators=[slug_validator, validate_policy_slug],
        help_text="Names the policy in decisions: its statements fire as this id. Cannot change.",
    )
    description = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this rule exists, for the next admin and the auditor.",
    )
    text = forms.CharField(
        label="Cedar policy",
        max_length=POLICY_TEXT_MAX,
        strip=False,
        widget=_code_area(14),
        help_text=(
            "One or more permit/forbid statements, each ending in ';'. Checked against "
            "Tether's schema before it is saved. Forbid beats permit; anything not permitted "
            "is denied."
        ),
    )
    enabled = forms.BooleanField(
        required=False, initial=True, help_text="Only enabled policies take part in decisions."
    )
    comment = forms.CharField(
        max_length=COMMENT_MAX,
        required=False,
        label="What changed and why",
        help_text="Kept with this version in the history.",
    )

    def __init__(self, *args: Any, policy: Policy | None = None, **kwargs: Any) -> None:
        self.policy = policy
        if policy is not None:
            kwargs.setdefault(
                "initial",
                {
                    "name": policy.name,
                    "description": policy.description,
                    "text": policy.text,
                    "enabled": policy.enabled,
                },
            )
        else:
            kwargs.setdefault("initial", {"text": EXAMPLE, "enabled": True})
        super().__init__(*args, **kwargs)
        if policy is not None:
            del self.fields["slug"]
        else:
            self.fields["slug"].widget.attrs["autocomplete"] = "off"

    def clean_text(self) -> str:
        return _no_nul(self.cleaned_data["text"])

    def clean_description(self) -> str:
        return _no_nul(self.cleaned_data["description"])

    def service_data(self) -> dict[str, Any]:
        return {k: v for k, v in self.cleaned_data.items() if k != "comment"}


class TryForm(forms.Form):
    """A request to simulate: who asks to do what, where, with what context."""

    agent = forms.ChoiceField(label="Agent")
    action = forms.ChoiceField(choices=Action.choices, initial=Action.TOOL_INVOKE)
    resource = forms.CharField(
        max_length=200,
        help_text="A tool, memory store or agent slug, or a model name.",
    )
    environment = forms.ChoiceField(choices=Environment.choices, initial=Environment.PROD)
    tool_action = forms.CharField(
        max_length=40, required=False, label="Tool action", help_text="e.g. read, update, close"
    )
    amount = forms.IntegerField(
        required=False,
        min_value=-(10**15),
        max_value=10**15,
        help_text="A whole amount, when the call moves value.",
    )
    on_behalf_of = forms.CharField(
        max_length=150, required=False, label="On behalf of", help_text="A username."
    )
    hour = forms.IntegerField(
        required=False, min_value=0, max_value=23, help_text="0 to 23; empty: now."
    )
    delegated = forms.BooleanField(required=False, label="Runs as a sub-agent")
    text = forms.CharField(
        label="Draft policy text",
        max_length=POLICY_TEXT_MAX,
        required=False,
        strip=False,
        widget=_code_area(6),
        help_text="Optional: tried as if it were in force.",
    )
    policy = forms.CharField(max_length=SLUG_MAX, required=False, widget=forms.HiddenInput)
    slug = forms.CharField(max_length=SLUG_MAX, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, agents: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["agent"]).choices = [("", "Choose an agent"), *agents]

    def clean_text(self) -> str:
        return _no_nul(self.cleaned_data["text"])

    def draft_slug(self) -> str:
        """The draft stands in for the policy being edited, or is named by the slug typed so
        far, or is simply ``draft``."""
        for key in ("policy", "slug"):
            value = self.cleaned_data.get(key) or ""
            try:
                slug_validator(value)
                validate_policy_slug(value)
            except forms.ValidationError:
                continue
            return value
        return ""

    def resource_uid(self) -> str:
        """``Tool::"crm-lookup"``: the resource as Cedar names it."""
        data = getattr(self, "cleaned_data", {})
        kind = RESOURCE_TYPE_OF_ACTION.get(data.get("action", ""), "")
        return f'{kind}::"{data.get("resource", "")}"' if kind else ""

    def policy_request(self) -> PolicyRequest:
        data = self.cleaned_data
        context: dict[str, Any] = {
            "environment": data["environment"],
            "tool_action": data.get("tool_action") or "",
            "on_behalf_of": data.get("on_behalf_of") or "",
            "delegated": bool(data.get("delegated")),
        }
        if data.get("amount") is not None:
            context["amount"] = data["amount"]
        if data.get("hour") is not None:
            context["hour"] = data["hour"]
        return PolicyRequest(
            principal=data["agent"],
            action=data["action"],
            resource_type=RESOURCE_TYPE_OF_ACTION[data["action"]],
            resource=data["resource"],
            context=context,
        )


class VersionCompareForm(forms.Form):
    a = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    b = forms.IntegerField(min_value=1, max_value=2**31 - 1)
