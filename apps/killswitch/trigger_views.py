"""The automatic triggers' page: the rules, when each last fired and what it stopped; admins
add, change, switch off and delete them.

Its own module beside the kill switch's console (its reads: trigger_selectors.py). As on the kill pages,
every signed-in role may look; only admins may write: anyone else gets a 403 for a write.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError

from . import trigger_services
from .trigger_forms import TriggerForm, apply_rule_error
from .trigger_selectors import trigger_get, trigger_rows

# --- views -------------------------------------------------------------------------------------


def _require_admin(request: HttpRequest) -> None:
    if not scope_of(request.user).is_admin:
        raise PermissionDenied("Only an admin may change the automatic triggers.")


def _list_page(request: HttpRequest, form: TriggerForm, *, status: int = 200) -> HttpResponse:
    context = {
        "section": "killswitch",
        "rows": trigger_rows(user=request.user),
        "is_admin": scope_of(request.user).is_admin,
        "form": form,
    }
    return render(request, "killswitch/triggers.html", context, status=status)


@role_required
@require_http_methods(["GET", "POST"])
def trigger_list(request: HttpRequest) -> HttpResponse:
    """GET: the rules (and, for admins, the form to add one). POST: add one."""
    if request.method != "POST":
        return _list_page(request, TriggerForm())
    _require_admin(request)
    form = TriggerForm(request.POST)
    if form.is_valid():
        try:
            rule = trigger_services.trigger_create(
                actor=current_user(request), **form.rule_fields()
            )
        except ApplicationError as exc:
            apply_rule_error(form, exc)
        else:
            messages.success(
                request,
                f"Added “{rule.name}”. It is checked every 10 seconds from now on; what "
                "happened before it existed does not count.",
            )
            return redirect("killswitch:triggers")
    return _list_page(request, form, status=400)


@role_required
@require_http_methods(["GET", "POST"])
def trigger_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    _require_admin(request)
    rule = trigger_get(user=request.user, rule_id=rule_id)
    form = TriggerForm(request.POST or None, rule=rule)
    if request.method == "POST" and form.is_valid():
        try:
            trigger_services.trigger_update(
                actor=current_user(request), rule=rule, **form.rule_fields()
            )
        except ApplicationError as exc:
            apply_rule_error(form, exc)
        else:
            messages.success(request, f"Saved “{rule.name}”.")
            return redirect("killswitch:triggers")
    context = {"section": "killswitch", "rule": rule, "form": form}
    status = 400 if request.method == "POST" else 200
    return render(request, "killswitch/triggers_edit.html", context, status=status)


@role_required
@require_POST
def trigger_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    _require_admin(request)
    rule = trigger_get(user=request.user, rule_id=rule_id)
    enabled = request.POST.get("enabled") == "true"
    trigger_services.trigger_set_enabled(actor=current_user(request), rule=rule, enabled=enabled)
    if enabled:
        messages.success(request, f"“{rule.name}” is on: it fires on what trips it from now.")
    else:
        messages.success(
            request,
            f"“{rule.name}” is off: it fires no more. What it engaged stays engaged until released.",
        )
    return redirect("killswitch:triggers")


@role_required
@require_http_methods(["GET", "POST"])
def trigger_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    """GET: what deleting means, and a button. POST: delete."""
    _require_admin(request)
    rule = trigger_get(user=request.user, rule_id=rule_id)
    if request.method == "POST":
        name = rule.name
        trigger_services.trigger_delete(actor=current_user(request), rule=rule)
        messages.success(request, f"Deleted “{name}”. The kills it engaged stay as they are.")
        return redirect("killswitch:triggers")
    context = {"section": "killswitch", "rule": rule}
    return render(request, "killswitch/triggers_delete.html", context)
