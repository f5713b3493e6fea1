"""The kill switch's console: what is stopped, a confirmation that names the blast radius
and asks why, and release. Views parse input and call the service."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.models import Department, Team
from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.registry.models import CHANGE, Agent
from apps.traces.selectors import runs_for_user

from . import services
from .constants import KillScope
from .forms import ReasonForm
from .models import KillSwitch


def _target(request: HttpRequest, scope: str) -> dict[str, Any]:
    """The scope's target from the query or form, as the user may press it (else 404)."""
    user = current_user(request)
    key = request.POST.get("target") or request.GET.get("target") or ""
    if scope == KillScope.GLOBAL:
        return {}
    if scope == KillScope.AGENT:
        return {"agent": get_object_or_404(Agent.objects.for_user(user, CHANGE), slug=key)}
    if scope == KillScope.RUN:
        try:
            run = runs_for_user(user=user).select_related("agent").filter(pk=key).first()
        except (ValueError, ValidationError):  # not a run id
            run = None
        if run is None or not Agent.objects.for_user(user, CHANGE).filter(pk=run.agent_id).exists():
            raise Http404
        return {"run": run}
    if not scope_of(user).is_admin:
        raise Http404
    if scope == KillScope.TEAM:
        return {"team": get_object_or_404(Team, slug=key)}
    if scope == KillScope.DEPARTMENT:
        return {"department": get_object_or_404(Department, slug=key)}
    raise Http404


@role_required
def confirm(request: HttpRequest, scope: str) -> HttpResponse:
    """GET: what pressing would stop, and the reason form. POST: press it."""
    if scope not in KillScope.values or (
        scope == KillScope.GLOBAL and not scope_of(current_user(request)).is_admin
    ):
        raise Http404
    target = _target(request, scope)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            kill = services.kill_engage(
                actor=current_user(request),
                scope=scope,
                reason=form.cleaned_data["reason"],
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
            return redirect("killswitch:list")
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
    rows = KillSwitch.objects.select_related("agent", "team", "department", "run__agent")
    if not scope.is_admin:
        rows = rows.filter(agent__in=Agent.objects.for_user(user)) | rows.filter(
            run__agent__in=Agent.objects.for_user(user)
        )
    shown = list(rows[:200])
    context = {
        "section": "killswitch",
        "engaged": [k for k in shown if k.engaged],
        "released": [k for k in shown if not k.engaged][:50],
        "is_admin": scope.is_admin,
        "departments": Department.objects.order_by("name") if scope.is_admin else [],
        "form": ReasonForm(),
    }
    return render(request, "killswitch/list.html", context)


@require_POST
@role_required
def release(request: HttpRequest, kill_id: int) -> HttpResponse:
    kill = get_object_or_404(KillSwitch, pk=kill_id)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Say why you release it.")
        return redirect("killswitch:list")
    try:
        services.kill_release(
            actor=current_user(request), kill=kill, reason=form.cleaned_data["reason"]
        )
        messages.success(
            request, "Released: new runs may start again; the killed runs stay killed."
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("killswitch:list")
