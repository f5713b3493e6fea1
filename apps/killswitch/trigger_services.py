"""Writes of the automatic triggers' rules (admins only): create, change, switch on or off,
delete. Each checks the rule, writes it and audits it in one transaction. What a rule does
when it fires is in ``triggers.py``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.accounts.models import Department, User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry.models import Agent

from .constants import TriggerKind, TriggerResponse
from .models import KillTrigger
from .triggers import TRIGGER_TARGET

NAME_MAX = 100
THRESHOLD_MAX = 10_000
WINDOW_MIN_SECONDS = 10  # the beat reads the trail every 10 s: a shorter window could be missed
WINDOW_MAX_SECONDS = 86_400
# Kinds that arrive as one event each (pushed, not counted over a window).
PUSHED_KINDS = (TriggerKind.DRIFT_CRITICAL,)


def _require_admin(actor: User) -> None:
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only an admin may change the automatic triggers.")


def clean_rule(
    *,
    name: str,
    kind: str,
    response: str,
    threshold: int,
    window_seconds: int,
    agent: Agent | None,
    department: Department | None,
    rule: KillTrigger | None = None,
) -> dict[str, Any]:
    """The rule's fields, checked; an ApplicationError naming every field that is wrong."""
    problems: dict[str, list[str]] = {}
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        problems["name"] = [f"Give the rule a name of 1-{NAME_MAX} characters."]
    else:
        taken = KillTrigger.objects.filter(name__iexact=name)
        if rule is not None:
            taken = taken.exclude(pk=rule.pk)
        if taken.exists():
            problems["name"] = [
                "Another rule has this name; kills name the rule that engaged them, so make "
                "it distinct."
            ]
    if kind not in TriggerKind.values:
        problems["kind"] = ["Choose what trips the rule."]
    if response not in TriggerResponse.values:
        problems["response"] = ["Choose what Tether does when it trips."]
    if not isinstance(threshold, int) or not 1 <= threshold <= THRESHOLD_MAX:
        problems["threshold"] = [f"A whole number from 1 to {THRESHOLD_MAX}."]
    if not isinstance(window_seconds, int) or not (
        WINDOW_MIN_SECONDS <= window_seconds <= WINDOW_MAX_SECONDS
    ):
        problems["window_seconds"] = ["From 10 seconds to 1 day."]
    if kind in PUSHED_KINDS:
        if isinstance(threshold, int) and threshold > 1 and "threshold" not in problems:
            problems["threshold"] = [
                "A critical drift alert is one event: it fires the rule at once, so the "
                "threshold is 1."
            ]
        if response == TriggerResponse.KILL_RUN:
            problems["response"] = [
                "A drift alert is about an agent, not one run: kill the agent or suspend it."
            ]
    if agent is not None and department is not None:
        problems["department"] = [
            "Choose an agent or a department, not both: an agent is in its own department."
        ]
    if problems:
        first = next(iter(problems.values()))[0]
        raise ApplicationError(f"The rule was not saved: {first}", details=problems)
    return {
        "name": name,
        "kind": kind,
        "response": response,
        "threshold": threshold,
        "window_seconds": window_seconds,
        "agent": agent,
        "department": department,
    }


def rule_state(rule: KillTrigger) -> dict[str, Any]:
    """What the audit trail records of a rule."""
    return {
        "name": rule.name,
        "kind": rule.kind,
        "response": rule.response,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "agent": rule.agent.slug if rule.agent is not None else None,
        "department": rule.department.slug if rule.department is not None else None,
        "enabled": rule.enabled,
    }


def _audit(actor: User, action: str, rule: KillTrigger, **change: Any) -> None:
    audit_record(
        actor=Actor.user(actor),
        action=f"killswitch.trigger.{action}",
        target_type=TRIGGER_TARGET,
        target_id=rule.pk,
        target_repr=rule.name,
        **change,
    )


@transaction.atomic
def trigger_create(
    *,
    actor: User,
    name: str,
    kind: str,
    response: str,
    threshold: int = 1,
    window_seconds: int = 300,
    agent: Agent | None = None,
    department: Department | None = None,
    enabled: bool = True,
) -> KillTrigger:
    _require_admin(actor)
    fields = clean_rule(
        name=name, kind=kind, response=response, threshold=threshold,
        window_seconds=window_seconds, agent=agent, department=department,
    )  # fmt: skip
    rule = KillTrigger.objects.create(**fields, enabled=enabled, created_by=actor)
    _audit(actor, "created", rule, after=rule_state(rule))
    return rule


@transaction.atomic
def trigger_update(
    *,
    actor: User,
    rule: KillTrigger,
    name: str,
    kind: str,
    response: str,
    threshold: int,
    window_seconds: int,
    agent: Agent | None = None,
    department: Department | None = None,
) -> KillTrigger:
    _require_admin(actor)
    fields = clean_rule(
        name=name, kind=kind, response=response, threshold=threshold,
        window_seconds=window_seconds, agent=agent, department=department, rule=rule,
    )  # fmt: skip
    before = rule_state(rule)
    for field, value in fields.items():
        setattr(rule, field, value)
    rule.save(update_fields=list(fields))
    after = rule_state(rule)
    if after != before:
        _audit(actor, "updated", rule, before=before, after=after)
    return rule


@transaction.atomic
def trigger_set_enabled(*, actor: User, rule: KillTrigger, enabled: bool) -> KillTrigger:
    """Switch a rule off (it fires no more; what it engaged stays engaged) or on again."""
    _require_admin(actor)
    if rule.enabled != enabled:
        before = rule_state(rule)
        rule.enabled = enabled
        rule.save(update_fields=["enabled"])
        _audit(actor, "enabled" if enabled else "disabled", rule, before=before,
               after=rule_state(rule))  # fmt: skip
    return rule


@transaction.atomic
def trigger_delete(*, actor: User, rule: KillTrigger) -> None:
    """Delete a rule. The kills it engaged stay, engaged or not, and keep its name in their
    trigger text; they just no longer link to it."""
    _require_admin(actor)
    before = rule_state(rule)
    _audit(actor, "deleted", rule, before=before)
    rule.delete()
