"""The audit log page (who changed what, when, with before and after), the chain page
(status, verification, export) and the export download."""

from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, no_role_page
from apps.common.errors import ApplicationError

from . import selectors, services
from .constants import EXPORT_MAX_EVENTS
from .export import export_response
from .forms import ExportForm, VerifyForm
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


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer for someone who may not read the audit log, or None for someone who may."""
    user = request.user
    if not scope_of(user).has_any_role:
        return no_role_page(request)
    if not selectors.can_read_audit_log(user):
        message = (
            "The audit log covers the whole organisation, so it is open to admins and to "
            "auditors whose role is organisation-wide. Ask an admin if you need it."
        )
        return render(request, "error.html", {"status": 403, "message": message}, status=403)
    return None


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    refused = _refusal(request)
    if refused is not None:
        return refused
    user = request.user
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


def _chain_page(
    request: HttpRequest, *, export_form: ExportForm | None = None, status: int = 200
) -> HttpResponse:
    chain = selectors.chain_status(user=request.user)
    context = {
        "section": "audit",
        "chain": chain,
        "verify_form": VerifyForm(),
        "export_form": export_form or ExportForm(),
        "export_max": f"{EXPORT_MAX_EVENTS:,}",
    }
    return render(request, "audit/chain.html", context, status=status)


@login_required
@require_GET
def chain_status(request: HttpRequest) -> HttpResponse:
    return _refusal(request) or _chain_page(request)


@login_required
@require_POST
def chain_verify(request: HttpRequest) -> HttpResponse:
    refused = _refusal(request)
    if refused is not None:
        return refused
    form = VerifyForm(request.POST)
    since_id = None
    if form.is_valid() and form.cleaned_data.get("scope") == "new":
        last = selectors.verification_list(user=request.user).filter(ok=True).first()
        since_id = last.head_event_id if last else None
    try:
        report, _ = services.audit_chain_verify(actor=current_user(request), since_id=since_id)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("audit:chain")
    if report.broken is not None:
        messages.error(request, f"The chain is broken. {report.broken.message}")
    else:
        scope = f" from event {since_id}" if since_id else ""
        events = "event" if report.checked == 1 else "events"
        messages.success(
            request,
            f"The chain is intact: {report.checked} {events} verified{scope}, "
            f"up to event {report.head_id}.",
        )
    return redirect("audit:chain")


@login_required
@require_GET
def chain_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """A range of events as JSON Lines (canonical, re-verifiable, or OCSF), streamed."""
    refused = _refusal(request)
    if refused is not None:
        return refused
    form = ExportForm(request.GET)
    if not form.is_valid():
        return _chain_page(request, export_form=form, status=400)
    try:
        return export_response(
            request, user=request.user, bounds=form.bounds(), export_format=form.export_format()
        )
    except ApplicationError as exc:
        form.add_error(None, exc.message)
        return _chain_page(request, export_form=form, status=400)
