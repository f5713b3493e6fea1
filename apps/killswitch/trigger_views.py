"""The automatic triggers' page: the rules, when each last fired and what it stopped; admins
add, change, switch off and delete them.

Its own module (selectors, views) beside the kill switch's console. As on the kill pages,
every signed-in role may look; only admins may write: anyone else gets a 403 for a write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError
from apps.registry.models import Agent

from . import trigger_services
from .models import KillSwitch, KillTrigger
from .trigger_forms import TriggerForm, apply_rule_error
from .triggers import FIRED_ACTION, TRIGGER_TARGET, duration_text

BIGINT_MAX = 2**63 - 1
RECENT_FIRINGS = 5


def ago(moment: Any) -> str:
    """How long ago, the way the list says it: "just now" within a minute (timesince would say
    "0 minutes"), else "5 minutes ago"."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


# --- selectors -------------------------------------------------------------------------------


def triggers_for_user(*, user: Any) -> QuerySet[KillTrigger]:
    """Admins see every rule; other roles the rules over any agent, a department, or an agent
    they may read — never a rule naming an agent hidden from them."""
    rows = KillTrigger.objects.select_related("agent", "department", "created_by").annotate(
        kills_caused=Count("kills", distinct=True),
        kills_engaged=Count("kills", filter=Q(kills__released_at__isnull=True), distinct=True),
    )
    if scope_of(user).is_admin:
        return rows
    return rows.filter(Q(agent__isnull=True) | Q(agent__in=Agent.objects.for_user(user)))


def trigger_get(*, user: Any, rule_id: int) -> KillTrigger:
    """One rule the user may see; a 404 for an id that names nothing they may see."""
    if rule_id > BIGINT_MAX:
        raise Http404("No such rule.")
    rule = triggers_for_user(user=user).filter(pk=rule_id).first()
    if rule is None:
        raise Http404("No such rule.")
    return rule


@dataclass
class FiringRow:
    """One past firing of a rule, as the list shows it."""

    at: Any
    message: str
    agent_slug: str
    run_id: str | None
    kill: KillSwitch | None
    suspended: bool

    @property
    def ago(self) -> str:
        return ago(self.at)


@dataclass
class RuleRow:
    rule: KillTrigger
    firings: list[FiringRow] = field(default_factory=list)

    @property
    def window(self) -> str:
        return duration_text(self.rule.window_seconds)

    @property
    def last_fired_ago(self) -> str:
        return ago(self.rule.last_fired_at) if self.rule.last_fired_at else ""


def trigger_rows(*, user: Any) -> list[RuleRow]:
    """The rules with their last firings (from the audit trail, which records every one),
    each with the kill it engaged if it engaged one. Firings on agents the user may not read
    are left out."""
    rules = list(triggers_for_user(user=user).order_by("name", "pk"))
    rows = {rule.pk: RuleRow(rule) for rule in rules}
    if not rows:
        return []
    events = AuditEvent.objects.filter(
        target_type=TRIGGER_TARGET, action=FIRED_ACTION, target_id__in=[str(pk) for pk in rows]
    ).order_by("-id")[: len(rows) * RECENT_FIRINGS * 4]
    picked: list[tuple[RuleRow, AuditEvent]] = []
    taken: dict[int, int] = {}
    for event in events:
        rule_id = int(event.target_id)
        if rule_id in rows and taken.get(rule_id, 0) < RECENT_FIRINGS:
            taken[rule_id] = taken.get(rule_id, 0) + 1
            picked.append((rows[rule_id], event))
    after = [event.after or {} for _, event in picked]
    kills = KillSwitch.objects.in_bulk([a["kill"] for a in after if a.get("kill")])
    readable: set[int] | None = None
    if not scope_of(user).is_admin:
        agent_ids = {int(a["agent"]) for a in after if a.get("agent") is not None}
        readable = set(
            Agent.objects.for_user(user).filter(pk__in=agent_ids).values_list("pk", flat=True)
        )
    for (row, event), data in zip(picked, after, strict=True):
        if readable is not None and data.get("agent") not in readable:
            continue
        row.firings.append(
            FiringRow(
                at=event.occurred_at,
                message=event.message,
                agent_slug=str(data.get("agent_slug", "")),
                run_id=data.get("run"),
                kill=kills.get(data.get("kill")),
                suspended=data.get("response") == "suspend_agent",
            )
        )
    return [rows[rule.pk] for rule in rules]


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
