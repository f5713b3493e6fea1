"""Reads of the automatic triggers, through the requesting user's scope: the rules, and when
each last fired and what it stopped (trigger_views.py shows them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.timesince import timesince

from apps.accounts.permissions import scope_of
from apps.audit.models import AuditEvent
from apps.registry.models import Agent

from .models import KillSwitch, KillTrigger
from .triggers import FIRED_ACTION, TRIGGER_TARGET, duration_text

BIGINT_MAX = 2**63 - 1
RECENT_FIRINGS = 5


def ago(moment: Any) -> str:
    """How long ago, the way the list says it: "just now" within a minute (timesince would say
    "0 minutes"), else "5 minutes ago"."""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


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
