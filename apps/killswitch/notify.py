"""After a kill: the owners and the departments' channels are told, and each stopped agent's
safe-state webhook is called. Sent by Celery with retries, each message linking straight to
the incident page (docs/killswitch-notifications.md).

The flow:

1. Once the engagement commits, ``tasks.queue_after_kill`` calls :func:`after_kill_plan`: a
   :class:`KillNotice` per owner's address and per notification channel, a
   :class:`SafeStateAction` per stopped agent with a webhook. Both tables are unique per
   (kill, kind, target) and (kill, agent), so planning twice makes nothing twice.
2. ``killswitch.safe_state`` calls :func:`safe_state_call` and ``killswitch.notify``
   :func:`notice_send` for one row each: they claim the row with a conditional UPDATE, send,
   and record the outcome in the same transaction, so Celery delivering a task twice sends
   nothing twice.

The sending itself is the approvals notifications' (email, Slack-compatible and signed
webhooks: ``apps.approvals.notify``): the same signature, timeouts, error handling and retry
rules, so a receiver that verifies approvals' webhooks verifies these too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from apps.approvals.models import ChannelKind, DeliveryStatus, NotificationChannel
from apps.approvals.notify import (
    DeliveryError,
    Notice,
    RetryableDeliveryError,
    bounded,
    delivery_attempt,
    delivery_row_give_up,
    email_addresses,
    json_bytes,
    post_json,
    public_url,
    send_email,
    signed_headers,
    slack_payload,
)
from apps.audit.services import Actor, audit_record
from apps.registry.constants import AgentStatus
from apps.registry.models import Agent

from .constants import KILL_TARGET, KillScope, NoticeKind, SafeStateStatus
from .models import KillNotice, KillSwitch, SafeStateAction

logger = logging.getLogger(__name__)

EVENT = "kill_switch.engaged"  # the X-Tether-Event header; bodies say tether.kill_switch.engaged
EVENT_TYPE = f"tether.{EVENT}"
EMAIL_TEMPLATE = "killswitch/notifications/email"
LINK_TEXT = "Open the incident"
SAFE_STATE_TIMEOUT_SECONDS = 5
SAFE_STATE_EXCERPT_MAX = 500  # SafeStateAction.response_excerpt
ERROR_MAX = 500  # KillNotice.last_error, SafeStateAction.last_error
REASON_SHOWN_MAX = 1000
AGENTS_SHOWN_MAX = 20  # named in a message; the rest are counted
AGENTS_SENT_MAX = 200  # listed in a webhook's JSON
SAFE_STATE_CLAIMABLE = (SafeStateStatus.PENDING, SafeStateStatus.FAILED)


# --- who is affected -----------------------------------------------------------------------------


def affected_agents(kill: KillSwitch) -> QuerySet[Agent]:
    """The agents the switch stopped: those whose runs it killed, and those of its scope even
    when none was running (the named agent whatever its status; of a team, a department or
    everything, the active ones — the others could not run anyway)."""
    in_scope: Q
    if kill.scope == KillScope.RUN:
        in_scope = Q(pk=kill.run.agent_id) if kill.run else Q(pk__in=[])
    elif kill.scope == KillScope.AGENT:
        in_scope = Q(pk=kill.agent_id)
    else:
        groups: dict[str, Q] = {
            KillScope.TEAM: Q(team_id=kill.team_id),
            KillScope.DEPARTMENT: Q(department_id=kill.department_id),
        }
        group = groups.get(kill.scope, Q())  # global: every agent
        in_scope = group & Q(status=AgentStatus.ACTIVE)
    stopped = kill.runs.values("agent_id")
    return (
        Agent.objects.filter(Q(pk__in=stopped) | in_scope)
        .select_related("owner", "department")
        .order_by("slug")
    )


def _owner_addresses(agents: list[Agent]) -> dict[str, list[Agent]]:
    """Each distinct owner's address (active owners with one), with the agents they own."""
    found: dict[str, list[Agent]] = {}
    seen: dict[str, str] = {}
    for agent in agents:
        owner = agent.owner
        address = (owner.email or "").strip() if owner is not None and owner.is_active else ""
        if not address:
            continue
        key = seen.setdefault(address.casefold(), address)
        found.setdefault(key, []).append(agent)
    return found


def _channels(kill: KillSwitch, agents: list[Agent]) -> QuerySet[NotificationChannel]:
    """The enabled channels of the affected departments and the organisation-wide ones (all of
    them for a global kill). The built-in approvers' channel is not one: nobody is asked to
    approve anything here."""
    channels = NotificationChannel.objects.filter(enabled=True).exclude(
        kind=ChannelKind.EMAIL, target=""
    )
    if kill.scope == KillScope.GLOBAL:
        return channels.order_by("pk")
    departments = {agent.department_id for agent in agents}
    if kill.department_id:
        departments.add(kill.department_id)
    return channels.filter(Q(department__isnull=True) | Q(department_id__in=departments)).order_by(
        "pk"
    )


# --- planning ------------------------------------------------------------------------------------


def after_kill_plan(*, kill_id: int) -> tuple[list[int], list[int]]:
    """Make the notices and safe-state actions of one engagement; the ids of the notices not
    yet sent and of the safe-state actions not yet called. A repeated call makes nothing new
    (the unique constraints) and returns the rows still waiting; nothing for a switch that no
    longer exists."""
    kill = (
        KillSwitch.objects.select_related("run", "agent", "team", "department")
        .filter(pk=kill_id)
        .first()
    )
    if kill is None:
        return [], []
    agents = list(affected_agents(kill))
    notices = [
        KillNotice(kill=kill, kind=NoticeKind.EMAIL, target=address)
        for address in _owner_addresses(agents)
    ]
    notices += [
        KillNotice(kill=kill, kind=channel.kind, target=channel.target, channel=channel)
        for channel in _channels(kill, agents)
    ]
    actions = [
        SafeStateAction(kill=kill, agent=agent, url=agent.shutdown_webhook)
        for agent in agents
        if agent.shutdown_webhook
    ]
    with transaction.atomic():
        KillNotice.objects.bulk_create(notices, ignore_conflicts=True)
        SafeStateAction.objects.bulk_create(actions, ignore_conflicts=True)
    waiting_notices = KillNotice.objects.filter(kill=kill, status=DeliveryStatus.QUEUED)
    waiting_actions = SafeStateAction.objects.filter(kill=kill, status=SafeStateStatus.PENDING)
    return (
        list(waiting_notices.order_by("pk").values_list("pk", flat=True)),
        list(waiting_actions.order_by("pk").values_list("pk", flat=True)),
    )


# --- the message ---------------------------------------------------------------------------------


def incident_link(kill_id: int) -> str:
    """The absolute link to the incident page, e.g. https://tether.example.com/kill/7/."""
    return public_url(reverse("killswitch:detail", args=[kill_id]))


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _what_stopped(kill: KillSwitch) -> str:
    if kill.scope == KillScope.RUN and kill.run is not None:
        return f"run {str(kill.run_id)[:8]} of {kill.run.agent.slug}"
    if kill.scope == KillScope.AGENT and kill.agent is not None:
        return f"agent {kill.agent.slug}"
    if kill.scope == KillScope.TEAM and kill.team is not None:
        return f"team {kill.team.slug}"
    if kill.scope == KillScope.DEPARTMENT and kill.department is not None:
        return f"department {kill.department.slug}"
    return "everything"


def _listed(slugs: list[str]) -> str:
    if not slugs:
        return "none"
    shown = ", ".join(slugs[:AGENTS_SHOWN_MAX])
    more = len(slugs) - AGENTS_SHOWN_MAX
    return shown + (f" and {more} more" if more > 0 else "")


def engaged_by(kill: KillSwitch) -> str:
    """Who pressed it, or "automatic" and what tripped it."""
    if not kill.automatic:
        return kill.engaged_by_name
    rule = kill.trigger_rule.name if kill.trigger_rule_id and kill.trigger_rule else ""
    what = kill.trigger or "a trigger"
    return f"automatic: {what}" + (f" (rule “{rule}”)" if rule else "")


def kill_message(kill: KillSwitch, agents: list[Agent], *, yours: list[Agent] | None) -> Notice:
    """What every channel says about an engagement: what was stopped (scope, target, runs,
    agents), who pressed it or what tripped it, why, when, and the link. ``yours``: the
    agents of the owner a message is addressed to."""
    what = _what_stopped(kill)
    runs = kill.runs_killed
    headline = f"Kill switch engaged: {what} stopped" + (
        f" ({runs} run{'s' if runs != 1 else ''} killed)" if runs else ""
    )
    facts = [
        ("Stopped", f"{kill.get_scope_display()}: {what}"),
        ("Runs killed", f"{runs}" + ("" if runs else " (none was running)")),
        ("Agents stopped", _listed([agent.slug for agent in agents])),
    ]
    if yours is not None:
        facts.append(("Your agents", _listed([agent.slug for agent in yours])))
    facts += [
        ("Engaged by", engaged_by(kill)),
        ("Reason", bounded(kill.reason, REASON_SHOWN_MAX)),
        ("Engaged at", timezone.localtime(kill.engaged_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    if kill.approvals_cancelled:
        facts.append(("Approvals cancelled", str(kill.approvals_cancelled)))
    if kill.frozen_stores:
        facts.append(("Memory frozen", ", ".join(kill.frozen_stores)))
    facts.append(("Until", "a person releases it; the killed runs stay killed"))
    return Notice(
        event=EVENT,
        headline=headline,
        url=incident_link(kill.pk),
        event_id=f"kill:{kill.pk}",
        facts=facts,
    )


def kill_payload(kill: KillSwitch, agents: list[Agent]) -> dict[str, Any]:
    """The engagement as JSON, for the generic webhooks."""
    return {
        "id": kill.pk,
        "url": incident_link(kill.pk),
        "scope": kill.scope,
        "target": kill.target_name,
        "automatic": kill.automatic,
        "trigger": kill.trigger or None,
        "engaged_by": kill.engaged_by_name,
        "reason": kill.reason,
        "engaged_at": _when(kill.engaged_at),
        "runs_killed": kill.runs_killed,
        "agents": [agent.slug for agent in agents[:AGENTS_SENT_MAX]],
        "agents_total": len(agents),
        "approvals_cancelled": kill.approvals_cancelled,
        "frozen_stores": list(kill.frozen_stores),
    }


def webhook_payload(kill: KillSwitch, agents: list[Agent], notice: Notice) -> dict[str, Any]:
    """A channel's generic webhook body, shaped like the approvals' (``type``, ``id`` to
    deduplicate on, ``url``, ``summary``) with the engagement under ``kill_switch``."""
    return {
        "type": EVENT_TYPE,
        "id": notice.event_id,
        "kill_switch": kill_payload(kill, agents),
        "url": notice.url,
        "summary": notice.headline,
    }


# --- sending notices -----------------------------------------------------------------------------


def notice_send(*, notice_id: int) -> bool:
    """Send one notice once (``delivery_attempt``: claimed, sent, recorded; a retryable
    failure is raised for the task to retry)."""
    return delivery_attempt(
        KillNotice,
        notice_id,
        load=lambda queryset: queryset.select_related(
            "channel", "kill__run__agent", "kill__agent", "kill__team", "kill__department",
            "kill__trigger_rule",
        ),
        send=_send_notice,
        describe=lambda n: f"killswitch: notice {n.pk} ({n.kind} {n.kill_id})",
    )  # fmt: skip


def _send_notice(notice: KillNotice) -> None:
    kill, channel = notice.kill, notice.channel
    if channel is None and notice.kind != NoticeKind.EMAIL:
        raise DeliveryError("The channel was deleted before this was sent.", retryable=False)
    if channel is not None and not channel.enabled:
        raise DeliveryError("The channel was disabled before this was sent.", retryable=False)
    agents = list(affected_agents(kill))
    if notice.kind == NoticeKind.EMAIL:
        if channel is None:  # an owner: their own agents are named too
            mine = _owner_addresses(agents).get(notice.target, [])
            message = kill_message(kill, agents, yours=mine)
            send_email([notice.target], message, separately=False, template=EMAIL_TEMPLATE)
        else:
            message = kill_message(kill, agents, yours=None)
            addresses = email_addresses(notice.target)
            send_email(addresses, message, separately=False, template=EMAIL_TEMPLATE)
    elif notice.kind == NoticeKind.SLACK:
        message = kill_message(kill, agents, yours=None)
        post_json(notice.target, json_bytes(slack_payload(message, link_text=LINK_TEXT)), {})
    elif notice.kind == NoticeKind.WEBHOOK:
        assert channel is not None
        message = kill_message(kill, agents, yours=None)
        body = json_bytes(webhook_payload(kill, agents, message))
        headers = signed_headers(
            channel.secret, body, event=EVENT, delivery=f"kill-notice-{notice.pk}"
        )
        post_json(notice.target, body, headers)
    else:
        raise DeliveryError(f"Unknown notice kind {notice.kind!r}.", retryable=False)


def notice_give_up(*, notice_id: int) -> bool:
    """After the last retry: a notice still failing is given up (its error is kept)."""
    return delivery_row_give_up(KillNotice, notice_id)


# --- the safe-state webhook ----------------------------------------------------------------------


def safe_state_payload(action: SafeStateAction) -> dict[str, Any]:
    """What the agent's safe-state webhook receives (the same on every retry): which switch,
    which agent, the runs of that agent it killed, and who pressed it and why."""
    kill = action.kill
    runs = kill.runs.filter(agent_id=action.agent_id).values_list("pk", flat=True)
    return {
        "event": EVENT_TYPE,
        "kill_switch": kill.pk,
        "url": incident_link(kill.pk),
        "agent": action.agent.slug,
        "runs": sorted(str(pk) for pk in runs),
        "scope": kill.scope,
        "target": kill.target_name,
        "reason": kill.reason,
        "engaged_by": kill.engaged_by_name,
        "automatic": kill.automatic,
        "trigger": kill.trigger or None,
        "engaged_at": _when(kill.engaged_at),
    }


def safe_state_call(*, action_id: int) -> bool:
    """Call one agent's safe-state webhook: True on a 2xx now, False if there was nothing to
    do (called already, or given up) or it failed for good. Claimed and recorded like a
    notice; every outcome is audited on the kill switch, so the incident shows it. A retryable
    failure (network, timeout, 5xx, 408/425/429) is recorded as ``failed`` and raised as
    RetryableDeliveryError for the task to retry."""
    failure: DeliveryError | None = None
    status: int | None = None
    excerpt = ""
    with transaction.atomic():
        claimed = SafeStateAction.objects.filter(
            pk=action_id, status__in=SAFE_STATE_CLAIMABLE
        ).update(attempts=F("attempts") + 1)
        if not claimed:
            return False
        action = SafeStateAction.objects.select_related("kill", "agent").get(pk=action_id)
        secret = action.agent.shutdown_webhook_secret
        try:
            if not secret:
                raise DeliveryError(
                    "The agent has no signing secret for its safe-state webhook.", retryable=False
                )
            body = json_bytes(safe_state_payload(action))
            headers = signed_headers(secret, body, event=EVENT, delivery=f"safe-state-{action.pk}")
            status, excerpt = post_json(
                action.url,
                body,
                headers,
                timeout=SAFE_STATE_TIMEOUT_SECONDS,
                keep=SAFE_STATE_EXCERPT_MAX,
            )
        except DeliveryError as exc:
            failure, status, excerpt = exc, exc.status, exc.body
        _record_safe_state(action, failure, status, excerpt)
    if failure is not None:
        logger.warning(
            "killswitch: safe-state webhook of %s (kill %s) failed: %s",
            action.agent.slug,
            action.kill_id,
            failure.message,
        )
        if failure.retryable:
            raise RetryableDeliveryError(failure.message)
        return False
    return True


def _record_safe_state(
    action: SafeStateAction, failure: DeliveryError | None, status: int | None, excerpt: str
) -> None:
    now = timezone.now()
    if failure is None:
        outcome, error, finished = SafeStateStatus.SUCCEEDED, "", now
    elif failure.retryable:
        outcome, error, finished = SafeStateStatus.FAILED, bounded(failure.message, ERROR_MAX), None
    else:
        outcome, error, finished = SafeStateStatus.GAVE_UP, bounded(failure.message, ERROR_MAX), now
    excerpt = excerpt[:SAFE_STATE_EXCERPT_MAX]
    SafeStateAction.objects.filter(pk=action.pk).update(
        status=outcome,
        http_status=status,
        response_excerpt=excerpt,
        last_error=error,
        finished_at=finished,
    )
    action.status, action.http_status, action.response_excerpt = outcome, status, excerpt
    action.last_error, action.finished_at = error, finished
    _audit_safe_state(action)


def safe_state_give_up(*, action_id: int) -> bool:
    """After the last retry: an action still failing is given up (its error is kept), and the
    incident's trail says so."""
    with transaction.atomic():
        given_up = SafeStateAction.objects.filter(
            pk=action_id, status__in=SAFE_STATE_CLAIMABLE
        ).update(status=SafeStateStatus.GAVE_UP, finished_at=timezone.now())
        if given_up:
            action = SafeStateAction.objects.select_related("kill", "agent").get(pk=action_id)
            _audit_safe_state(action)
    return bool(given_up)


def _url_shown(url: str) -> str:
    """The webhook URL as the audit trail may keep it: scheme, host and the start of the path
    (its query, which may hold a token, never) — the approvals channels' rule."""
    from apps.approvals.channel_services import target_shown

    return target_shown(NotificationChannel(kind=ChannelKind.WEBHOOK, target=url))


def _audit_safe_state(action: SafeStateAction) -> None:
    slug = action.agent.slug
    if action.status == SafeStateStatus.SUCCEEDED:
        message = f"Safe-state webhook of {slug} answered HTTP {action.http_status}"
    elif action.status == SafeStateStatus.FAILED:
        message = f"Safe-state webhook of {slug} failed (attempt {action.attempts}, retrying): "
        message += action.last_error
    else:
        message = f"Safe-state webhook of {slug} given up after {action.attempts} attempt"
        message += ("s" if action.attempts != 1 else "") + f": {action.last_error}"
    audit_record(
        actor=Actor.system("kill-switch"),
        action=f"killswitch.safe_state.{action.status}",
        target_type=KILL_TARGET,
        target_id=action.kill_id,
        target_repr=str(action.kill),
        after={
            "agent": slug,
            "url": _url_shown(action.url),
            "status": action.status,
            "attempts": action.attempts,
            "http_status": action.http_status,
            "error": action.last_error or None,
        },
        message=bounded(message, ERROR_MAX),
    )


def notice_target_shown(notice: KillNotice) -> str:
    """What the incident page may show of a notice's target: an address in full, of a webhook
    URL its scheme, host and the start of its path (a Slack URL is itself a credential)."""
    if notice.kind == NoticeKind.EMAIL:
        return notice.target
    from apps.approvals.channel_services import target_shown

    return target_shown(NotificationChannel(kind=notice.kind, target=notice.target))
