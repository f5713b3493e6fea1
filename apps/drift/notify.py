"""Drift alerts are told: the agent's owner and the organisation-wide admins are emailed, and
the notification channels of the agent's department are told, each message linking to the
alert's page (docs/drift.md).

The flow, the budget alerts' (apps/costs/alerts.py):

1. An alert is raised, or an open one grows critical; once that commits,
   ``tasks.queue_drift_notices`` calls :func:`drift_notices_plan`: a
   :class:`DriftAlertNotice` per person's address and per notification channel, unique per
   (alert, event, kind, target), so planning twice makes nothing twice. A snoozed or resolved
   alert is told nothing.
2. ``drift.alert_notify`` calls :func:`drift_notice_send` for one notice: it claims the row
   with a conditional UPDATE, sends, and records the outcome in the same transaction, so
   Celery delivering the task twice sends nothing twice.

The sending itself is the approvals notifications' (``apps.approvals.notify``): the same
email, Slack message shape, webhook signature, timeouts and retry rules as the kill switch's
and the budget alerts'.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from apps.accounts.constants import Role
from apps.accounts.models import RoleAssignment, User
from apps.approvals.models import ChannelKind, DeliveryStatus, NoticeKind, NotificationChannel
from apps.approvals.notify import (
    DeliveryError,
    Notice,
    delivery_attempt,
    delivery_row_give_up,
    department_channels,
    email_addresses,
    json_bytes,
    post_json,
    public_url,
    reachable_people,
    send_email,
    signed_headers,
    slack_payload,
)
from apps.common.errors import ApplicationError
from apps.registry.models import Agent

from .constants import AlertStatus, Severity
from .describe import TESTS, alert_headline, p_words
from .models import DriftAlert, DriftAlertNotice

EVENT = "drift.alert"  # the X-Tether-Event header; bodies say tether.drift.alert
EVENT_TYPE = f"tether.{EVENT}"
RAISED, CRITICAL = "raised", "critical"
EVENTS = (RAISED, CRITICAL)  # DriftAlertNotice.event
EMAIL_TEMPLATE = "drift/notifications/email"
LINK_TEXT = "Open the drift alert"
ALERT_RELATED = ("agent__owner", "agent__department", "version")


# --- who is told -----------------------------------------------------------------------------


def drift_people(agent: Agent) -> list[User]:
    """Whom to email: the agent's owner and the organisation-wide admins (superusers
    included), those active with an address, each address once."""
    admins = RoleAssignment.objects.filter(
        role=Role.ADMIN, department__isnull=True, team__isnull=True
    ).values_list("user_id", flat=True)
    superusers = User.objects.filter(is_superuser=True).values_list("pk", flat=True)
    owner = {agent.owner_id} if agent.owner_id is not None else set()
    return reachable_people(owner | set(admins) | set(superusers))


def drift_channels(agent: Agent) -> QuerySet[NotificationChannel]:
    """The enabled channels of the agent's department and the organisation-wide ones."""
    return department_channels(agent.department_id)


def is_quiet(alert: DriftAlert, now: datetime | None = None) -> bool:
    """Resolved, or snoozed until later: nobody is told about it."""
    if alert.status == AlertStatus.RESOLVED:
        return True
    now = now or timezone.now()
    return alert.status == AlertStatus.SNOOZED and (alert.snoozed_until or now) > now


# --- planning --------------------------------------------------------------------------------


def drift_notices_plan(*, alert_id: int, event: str) -> list[int]:
    """Make the notices of one event (raised, critical) of one alert; the ids of those not
    yet sent. A repeated call makes nothing new (the unique constraint) and returns the
    notices still queued; nothing for an alert that no longer exists, is snoozed or resolved."""
    if event not in EVENTS:
        raise ApplicationError(f"Unknown drift notice event {event!r}.")
    alert = DriftAlert.objects.select_related("agent").filter(pk=alert_id).first()
    if alert is None or is_quiet(alert):
        return []
    notices = [
        DriftAlertNotice(
            alert=alert, event=event, kind=NoticeKind.EMAIL, target=person.email.strip()
        )
        for person in drift_people(alert.agent)
    ]
    notices += [
        DriftAlertNotice(
            alert=alert,
            event=event,
            kind=NoticeKind.CHANNEL,
            target=str(channel.pk),
            channel=channel,
        )
        for channel in drift_channels(alert.agent)
    ]
    DriftAlertNotice.objects.bulk_create(notices, ignore_conflicts=True)
    waiting = DriftAlertNotice.objects.filter(
        alert=alert, event=event, status=DeliveryStatus.QUEUED
    )
    return list(waiting.order_by("pk").values_list("pk", flat=True))


# --- the message -----------------------------------------------------------------------------


def alert_link(alert_id: int) -> str:
    """The absolute link to the alert's page."""
    return public_url(reverse("drift:alert", args=[alert_id]))


def _when(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _metric_words(alert: DriftAlert) -> str:
    """``Outcome, last 24 hours``; ``Custom metric csat.score, last hour``."""
    label = alert.get_metric_display()
    if alert.key:
        label += f" {alert.key}"
    return f"{label}, {alert.get_window_display().lower()}"


def _test_words(alert: DriftAlert) -> str:
    """``chi-square test, p < 0.001, PSI 0.31``."""
    words = f"{TESTS.get(alert.test, alert.test)}, {p_words(alert.p_value)}"
    return words + (f", PSI {alert.psi:.2f}" if alert.psi is not None else "")


def drift_message(alert: DriftAlert, event: str = RAISED) -> Notice:
    """What every channel says about an alert, e.g. the headline "Drift on claims-triage
    (prod): outcome “approved” 85% → 91% since Tue 14:00, p < 0.001" ("Critical drift" once it
    is critical), then the facts: the agent, environment and version, what moved and how it
    was tested, on how many runs, the change suspected, severity, when first seen; and the
    link to the alert."""
    agent = alert.agent
    critical = event == CRITICAL or alert.severity == Severity.CRITICAL
    kind = "Critical drift" if critical else "Drift"
    headline = f"{kind} on {agent.slug} ({alert.environment}): {alert_headline(alert)}"
    facts = [
        ("Agent", f"{agent.name} ({agent.slug})"),
        ("Environment", alert.environment),
        ("Version", f"v{alert.version.number}"),
        ("Metric", _metric_words(alert)),
        ("Test", _test_words(alert)),
        (
            "Samples",
            f"{alert.current_n:,} runs against a baseline of {alert.baseline_n:,}",
        ),
    ]
    if alert.suspected_change:
        facts.append(("Suspected change", alert.suspected_change))
    facts += [
        ("Severity", alert.get_severity_display()),
        ("First seen", timezone.localtime(alert.first_seen_at, UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return Notice(
        event=EVENT,
        headline=headline,
        url=alert_link(alert.pk),
        event_id=f"drift-alert:{alert.pk}:{event}",
        facts=facts,
    )


def alert_payload(alert: DriftAlert, url: str) -> dict[str, Any]:
    """The alert as JSON, for the generic webhooks: values as the detectors hold them (a
    proportion from 0 to 1, milliseconds, US dollars, tokens)."""
    return {
        "id": alert.pk,
        "agent": alert.agent.slug,
        "environment": alert.environment,
        "version": alert.version.number,
        "metric": alert.metric,
        "key": alert.key or None,
        "window": alert.window,
        "subject": alert.subject,
        "test": alert.test,
        "baseline_value": alert.baseline_value,
        "current_value": alert.current_value,
        "baseline_n": alert.baseline_n,
        "current_n": alert.current_n,
        "p_value": alert.p_value,
        "psi": alert.psi,
        "severity": alert.severity,
        "status": alert.status,
        "onset_at": _when(alert.onset_at),
        "first_seen_at": _when(alert.first_seen_at),
        "suspected_change": alert.suspected_change or None,
        "url": url,
    }


def webhook_payload(alert: DriftAlert, event: str, notice: Notice) -> dict[str, Any]:
    """A channel's generic webhook body, shaped like the approvals', the kill switch's and the
    budget alerts' (``type``, ``id`` to deduplicate on, ``url``, ``summary``), which event it
    tells under ``event`` and the alert under ``drift_alert``."""
    return {
        "type": EVENT_TYPE,
        "id": notice.event_id,
        "event": event,
        "drift_alert": alert_payload(alert, notice.url),
        "url": notice.url,
        "summary": notice.headline,
    }


# --- sending notices -------------------------------------------------------------------------


def drift_notice_send(*, notice_id: int) -> bool:
    """Send one notice once (``delivery_attempt``: claimed, sent, recorded; a retryable
    failure is raised for the task to retry)."""
    return delivery_attempt(
        DriftAlertNotice,
        notice_id,
        load=lambda queryset: queryset.select_related(
            "channel", *(f"alert__{path}" for path in ALERT_RELATED)
        ),
        send=_send_notice,
        describe=lambda n: f"drift: alert notice {n.pk} ({n.event}, {n.kind} {n.target})",
    )


def _send_notice(notice: DriftAlertNotice) -> None:
    alert = notice.alert
    message = drift_message(alert, notice.event)
    if notice.kind == NoticeKind.EMAIL:
        send_email([notice.target], message, separately=False, template=EMAIL_TEMPLATE)
        return
    channel = notice.channel
    if channel is None:
        raise DeliveryError("The channel was deleted before this was sent.", retryable=False)
    if not channel.enabled:
        raise DeliveryError("The channel was disabled before this was sent.", retryable=False)
    if channel.kind == ChannelKind.EMAIL:
        send_email(
            email_addresses(channel.target), message, separately=False, template=EMAIL_TEMPLATE
        )
    elif channel.kind == ChannelKind.SLACK:
        post_json(channel.target, json_bytes(slack_payload(message, link_text=LINK_TEXT)), {})
    elif channel.kind == ChannelKind.WEBHOOK:
        body = json_bytes(webhook_payload(alert, notice.event, message))
        headers = signed_headers(
            channel.secret, body, event=EVENT, delivery=f"drift-alert-notice-{notice.pk}"
        )
        post_json(channel.target, body, headers)
    else:
        raise DeliveryError(f"Unknown channel kind {channel.kind!r}.", retryable=False)


def drift_notice_give_up(*, notice_id: int) -> bool:
    """After the last retry: a notice still failing is given up (its error is kept)."""
    return delivery_row_give_up(DriftAlertNotice, notice_id)
