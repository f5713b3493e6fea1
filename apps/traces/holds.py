"""The legal holds page (admins): the holds, active first; place one on a run or a trace;
release one. Its own module (form, selectors, views) so the run pages can grow apart from it.

The run page's "place a legal hold" button posts to ``traces:legal-hold-place`` with ``run``
(the run id), ``reason`` and ``next`` (where to come back to); see docs/traces.md#legal-holds.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import F, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.registry.forms import apply_service_error
from apps.runtime.models import Run

from . import services
from .constants import MESSAGE_MAX
from .models import LegalHold

BIGINT_MAX = 2**63 - 1
HOLDS_REFUSED = "Legal holds are placed and released by admins."
HOLDS_SHOWN = 200


# --- selectors ---------------------------------------------------------------------------------


def legal_hold_list(*, user: Any) -> QuerySet[LegalHold]:
    """Every hold, active first, newest first: admins only (anyone else: none)."""
    if not scope_of(user).is_admin:
        return LegalHold.objects.none()
    return LegalHold.objects.select_related("run__agent").order_by(
        F("released_at").desc(nulls_first=True), "-placed_at", "-pk"
    )


def legal_hold_get(*, user: Any, hold_id: int) -> LegalHold:
    """One hold; for anyone but an admin, or an id that names nothing, a 404."""
    if hold_id > BIGINT_MAX:
        raise Http404("No such legal hold.")
    return get_object_or_404(legal_hold_list(user=user), pk=hold_id)


def legal_holds_active_for_run(*, user: Any, run: Run) -> list[LegalHold]:
    """The active holds naming ``run`` (for the run page; admins see them, others none)."""
    return list(legal_hold_list(user=user).filter(run=run, released_at__isnull=True))


# --- the form ------------------------------------------------------------------------------------


class LegalHoldForm(forms.Form):
    run = forms.UUIDField(
        required=False,
        label="Run id",
        help_text="Holds every span of the run, and of every trace linked to it.",
    )
    trace_id = forms.CharField(
        required=False,
        max_length=32,
        label="Trace id",
        help_text="32 hexadecimal characters, as OTLP/JSON and the trace pages show it.",
    )
    reason = forms.CharField(
        max_length=MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The incident or case: the audit log keeps it with your name.",
    )

    def clean_run(self) -> Run | None:
        run_id = self.cleaned_data.get("run")
        if run_id is None:
            return None
        run = Run.objects.filter(pk=run_id).first()
        if run is None:
            raise forms.ValidationError("No run has this id.")
        return run


# --- views ---------------------------------------------------------------------------------------


def _page(request: HttpRequest, form: LegalHoldForm, *, status: int = 200) -> HttpResponse:
    holds = list(legal_hold_list(user=request.user)[:HOLDS_SHOWN])
    context = {
        "section": "traces",
        "form": form,
        "active": [h for h in holds if h.released_at is None],
        "released": [h for h in holds if h.released_at is not None],
    }
    return render(request, "traces/holds.html", context, status=status)


def _refused(request: HttpRequest) -> HttpResponse:
    return render(request, "error.html", {"status": 403, "message": HOLDS_REFUSED}, status=403)


def _back(request: HttpRequest, fallback: str = "traces:legal-holds") -> HttpResponse:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


@role_required
@require_http_methods(["GET"])
def legal_holds(request: HttpRequest) -> HttpResponse:
    if not scope_of(request.user).is_admin:
        return _refused(request)
    initial = {"run": request.GET.get("run", ""), "trace_id": request.GET.get("trace_id", "")}
    return _page(request, LegalHoldForm(initial=initial))


@role_required
@require_POST
def legal_hold_place(request: HttpRequest) -> HttpResponse:
    if not scope_of(request.user).is_admin:
        return _refused(request)
    form = LegalHoldForm(request.POST)
    if form.is_valid():
        try:
            hold = services.legal_hold_place(
                actor=current_user(request),
                run=form.cleaned_data["run"],
                trace_id=form.cleaned_data["trace_id"],
                reason=form.cleaned_data["reason"],
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request, f"{hold}: its spans are kept, whatever retention says, until released."
            )
            return _back(request)
    return _page(request, form, status=400)


@login_required  # anyone but an admin: the selector answers 404
@require_POST
def legal_hold_release(request: HttpRequest, hold_id: int) -> HttpResponse:
    hold = legal_hold_get(user=request.user, hold_id=hold_id)
    try:
        hold = services.legal_hold_release(
            actor=current_user(request), hold=hold, reason=request.POST.get("reason", "")
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Released the legal hold on {hold.target}: retention applies again."
        )
    return _back(request)
