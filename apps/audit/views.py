"""The audit log page: who changed what, when, with before and after."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from apps.accounts.permissions import scope_of
from apps.accounts.views import no_role_page

from . import selectors
from .models import AuditEvent

EVENTS_PER_PAGE = 50
# Where a target of each type is shown in the console (the target_repr is its slug).
TARGET_PAGES = {
    "agent": "registry:agent-detail",
    "tool": "registry:tool-detail",
    "memory_store": "registry:memory-detail",
}


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False, max_length=200)
    target_type = forms.ChoiceField(required=False, label="Target type")
    target = forms.CharField(required=False, max_length=300, help_text="Slug, name or id")

    def __init__(self, *args: Any, actions: list[str], target_types: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        prefixes = sorted({a.split(".")[0] + "." for a in actions if "." in a})
        cast(forms.ChoiceField, self.fields["action"]).choices = [
            ("", "Any action"),
            *[(p, f"{p}* (all)") for p in prefixes],
            *[(a, a) for a in actions],
        ]
        types = [("", "Any type"), *[(t, t) for t in target_types]]
        cast(forms.ChoiceField, self.fields["target_type"]).choices = types

    def filters(self) -> dict[str, str]:
        self.is_valid()
        cleaned = getattr(self, "cleaned_data", {})
        return {name: cleaned.get(name) or "" for name in self.fields if name not in self.errors}


def _changes(event: AuditEvent) -> tuple[list[str], str, str]:
    """The top-level keys that changed, and before/after limited to those keys, as JSON."""
    before, after = event.before, event.after
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        before = {k: before.get(k) for k in keys}
        after = {k: after.get(k) for k in keys}
    else:
        keys = []  # a creation or deletion: every key "changed", which says nothing

    def dump(value: Any) -> str:
        return "" if value is None else json.dumps(value, indent=2, ensure_ascii=False, default=str)

    return keys, dump(before), dump(after)


def _target_url(event: AuditEvent) -> str:
    name = TARGET_PAGES.get(event.target_type)
    if not name:
        return ""
    try:
        return reverse(name, args=[event.target_repr])
    except NoReverseMatch:
        return ""


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not scope_of(user).has_any_role:
        return no_role_page(request)
    if not selectors.can_read_audit_log(user):
        message = (
            "The audit log covers the whole organisation, so it is open to admins and to "
            "auditors whose role is organisation-wide. Ask an admin if you need it."
        )
        return render(request, "error.html", {"status": 403, "message": message}, status=403)
    actions, target_types = selectors.audit_filter_choices(user=user)
    form = AuditFilterForm(request.GET, actions=actions, target_types=target_types)
    filters = form.filters()
    page = Paginator(selectors.audit_event_list(user=user, **filters), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    rows = []
    for event in page.object_list:
        keys, before, after = _changes(event)
        rows.append(
            {
                "event": event,
                "keys": keys,
                "before": before,
                "after": after,
                "url": _target_url(event),
            }
        )
    context = {
        "section": "audit",
        "form": form,
        "filtered": any(filters.values()),
        "page": page,
        "rows": rows,
    }
    return render(request, "audit/log.html", context)
