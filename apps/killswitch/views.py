"""The kill switch's console: what is stopped, a confirmation that names the blast radius
and asks why, and release. Views parse input and call the service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.models import Department
from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError, NotFound

from . import selectors, services
from .constants import KillScope
from .forms import EngageForm, ReasonForm


def _target(request: HttpRequest, scope: str) -> dict[str, Any]:
    key = request.POST.get("target") or request.GET.get("target") or ""
    try:
        return selectors.kill_target(user=current_user(request), scope=scope, key=key)
    except NotFound:
        raise Http404 from None


@role_required
def confirm(request: HttpRequest, scope: str) -> HttpResponse:
    """GET: what pressing would stop, and the reason form. POST: press it."""
    target = _target(request, scope)  # 404 for an unknown scope or one the user may not stop
    form = EngageForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            kill = services.kill_engage(
                actor=current_user(request),
                scope=scope,
                reason=form.cleaned_data["reason"],
                memory_reads=form.cleaned_data["memory_reads"],
                **target,
            )
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Stopped: {kill.runs_killed} run{'s' if kill.runs_killed != 1 else ''} killed, "
                f"{kill.approvals_cancelled} pending approval{'s' if kill.approvals_cancelled != 1 else ''} "
                "cancelled. Nothing starts in this scope until it is released.",
            )
            return redirect("killswitch:detail", kill.pk)
    context = {
        "section": "killswitch",
        "scope": scope,
        "scope_label": KillScope(scope).label,
        "target": next(iter(target.values()), None),
        "target_key": request.POST.get("target") or request.GET.get("target") or "",
        "blast": services.blast_radius(scope=scope, **target),
        "form": form,
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "killswitch/confirm.html", context, status=status)


@role_required
def kill_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    scope = scope_of(user)
    shown = list(selectors.kills_for_user(user=user)[:200])
    context = {
        "section": "killswitch",
        "engaged": [k for k in shown if k.engaged],
        "released": [k for k in shown if not k.engaged][:50],
        "is_admin": scope.is_admin,
        "departments": Department.objects.order_by("name") if scope.is_admin else [],
        "form": ReasonForm(),
    }
    return render(request, "killswitch/list.html", context)


@role_required
def detail(request: HttpRequest, kill_id: int) -> HttpResponse:
    """The incident an engagement opened: who pressed it and why, what it stopped, the runs'
    last steps before the kill, what the safe-state actions did, who was told."""
    user = current_user(request)
    kill = get_object_or_404(selectors.kills_for_user(user=user), pk=kill_id)
    context = {
        "section": "killswitch",
        "incident": selectors.kill_incident(kill=kill),
        "may_release": kill.engaged and services.may_press(user, kill),
        "form": ReasonForm(),
    }
    return render(request, "killswitch/detail.html", context)


@require_POST
@role_required
def release(request: HttpRequest, kill_id: int) -> HttpResponse:
    kill = get_object_or_404(selectors.kills_for_user(user=current_user(request)), pk=kill_id)
    form = ReasonForm(request.POST)
    back = request.POST.get("next") == "detail"
    if not form.is_valid():
        messages.error(request, "Say why you release it.")
        return redirect("killswitch:detail", kill.pk) if back else redirect("killswitch:list")
    try:
        services.kill_release(
            actor=current_user(request), kill=kill, reason=form.cleaned_data["reason"]
        )
        messages.success(
            request, "Released: new runs may start again; the killed runs stay killed."
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("killswitch:detail", kill.pk) if back else redirect("killswitch:list")
