"""Notifications of approval requests: email, Slack-compatible and signed webhooks, sent by
Celery with retries, each message linking straight to the request.

The flow (docs/approvals-notifications.md):

1. A service changes a request and calls :func:`notify_on_commit`; once its transaction
   commits, the task ``approvals.notify`` is queued with the request's id.
2. ``approvals.notify`` calls :func:`notifications_plan`: one :class:`NotificationDelivery` row
   per channel that applies, made with ``get_or_create`` on (channel, approval, event), so a
   task Celery delivers twice finds the rows it made the first time and queues nothing new.
3. ``approvals.deliver`` calls :func:`delivery_send` for one row: it claims the row, sends,
   and records ``sent`` or ``failed`` (retried with backoff) or ``gave_up``.

**Approvers in scope** are emailed directly about ``created`` and ``escalated`` requests. That
is a channel too, so the same delivery rows make it idempotent and retried and show its
failures on the channels page: one built-in email channel named "Approvers in scope" with an
empty ``target`` (an admin-made channel always has one), made on first use. Its recipients are
worked out when it is sent (:func:`approvers_in_scope`). Admins may disable it, not delete it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import BadHeaderError, get_connection, send_mail
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.accounts.constants import Role
from apps.accounts.models import RoleAssignment, User
from apps.audit.services import Actor, audit_record
from apps.common.db import fetch_one
from apps.common.errors import ApplicationError
from apps.common.request_context import get_request_id
from apps.registry.constants import RiskClass

from .constants import ApprovalStatus, Verdict
from .models import (
    ApprovalDelegation,
    ApprovalRequest,
    ChannelKind,
    DeliveryStatus,
    NotificationChannel,
    NotificationDelivery,
)

logger = logging.getLogger(__name__)

EVENTS = ("created", "escalated", "approved", "rejected", "changes_requested")
# Events that ask someone to act: the approvers in scope are emailed about these.
ASKING_EVENTS = frozenset({"created", "escalated"})
APPROVERS_CHANNEL_NAME = "Approvers in scope"
# Serialises making the built-in channel (PostgreSQL advisory lock; any number nobody else uses).
APPROVERS_CHANNEL_LOCK_KEY = 7_411_917
CLAIMABLE = (DeliveryStatus.QUEUED, DeliveryStatus.FAILED)
ERROR_MAX = 500  # NotificationDelivery.last_error
REASON_SHOWN_MAX = 1000
SLACK_TEXT_MAX = 2900  # a Slack section's text holds 3000 characters
RESPONSE_SNIPPET_MAX = 200
USER_AGENT = "Tether-Notifications/1"
# A receiver answering these may well succeed later; any other 4xx will not.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
CHANNEL_TARGET = "notification_channel"

HEADLINES = {
    "created": "Approval needed: {agent} asks to {step}",
    "escalated": "Escalated, still unanswered: {agent} asks to {step}",
    "approved": "Approved: {agent} may {step}",
    "rejected": "Rejected: {agent} may not {step}",
    "changes_requested": "Changes requested: {agent} wanted to {step}",
    "test": "Test message from Tether",
}


class DeliveryError(Exception):
    """Sending failed. ``retryable``: the network or the receiver may do better later (a
    timeout, a refused connection, a 5xx, 429); otherwise trying again will not help."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, body: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status = status  # the receiver's HTTP status, when it answered
        self.body = body  # the start of its answer (see ``post_json``'s ``keep``)


class RetryableDeliveryError(DeliveryError):
    """Raised by :func:`delivery_send` after recording a retryable failure: the task retries."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


# --- queueing ------------------------------------------------------------------------------------


def notify_on_commit(approval_id: Any, event: str) -> None:
    """Once the current transaction commits, queue ``approvals.notify`` for this request.

    ``robust``: a broker that is down must not turn the committed change into an error page;
    the failure is logged and the request stays visible in the inbox.
    """
    from . import tasks

    request_id = get_request_id()

    def queue() -> None:  # a named function: robust on_commit logs its __qualname__
        tasks.notify.delay(str(approval_id), event, request_id=request_id)

    transaction.on_commit(queue, robust=True)


# --- planning ------------------------------------------------------------------------------------


def notifications_plan(*, approval_id: Any, event: str) -> list[int]:
    """Make the delivery rows of one event of one request; the ids of those not yet sent.

    A row per enabled channel without a department or with the request's, and for an asking
    event one on the built-in "Approvers in scope" channel. ``get_or_create`` on the unique
    (channel, approval, event) makes a repeated call return the same rows; only rows still
    ``queued`` come back (a failed row is already being retried by its own task). Nothing is
    planned for a request that no longer exists, nor asking about one already answered.
    """
    if event not in EVENTS:
        raise ApplicationError(f"Unknown notification event {event!r}.")
    approval = ApprovalRequest.objects.filter(pk=approval_id).first()
    if approval is None:
        return []
    if event in ASKING_EVENTS and approval.status != ApprovalStatus.PENDING:
        return []
    channels = list(
        NotificationChannel.objects.filter(enabled=True)
        .filter(Q(department__isnull=True) | Q(department_id=approval.department_id))
        .exclude(kind=ChannelKind.EMAIL, target="")
    )
    if event in ASKING_EVENTS:
        builtin = approvers_channel()
        if builtin.enabled:
            channels.append(builtin)
    pending = []
    with transaction.atomic():
        for channel in channels:
            delivery, _ = NotificationDelivery.objects.get_or_create(
                channel=channel, approval=approval, event=event
            )
            if delivery.status == DeliveryStatus.QUEUED:
                pending.append(delivery.pk)
    return pending


def is_approvers_channel(channel: NotificationChannel) -> bool:
    return channel.kind == ChannelKind.EMAIL and channel.target == ""


def approvers_channel() -> NotificationChannel:
    """The built-in channel of direct emails to approvers in scope, made (and audited) on
    first use. An advisory lock keeps two first uses at once from making two."""
    found = _builtin_channels().first()
    if found is not None:
        return found
    with transaction.atomic():
        if connection.vendor == "postgresql":
            fetch_one("SELECT pg_advisory_xact_lock(%s)", [APPROVERS_CHANNEL_LOCK_KEY])
        found = _builtin_channels().first()
        if found is not None:
            return found
        channel = NotificationChannel.objects.create(
            name=APPROVERS_CHANNEL_NAME, kind=ChannelKind.EMAIL, target=""
        )
        audit_record(
            actor=Actor.system("approvals"),
            action="approval.channel.created",
            target_type=CHANNEL_TARGET,
            target_id=channel.pk,
            target_repr=str(channel),
            after={"name": channel.name, "kind": channel.kind, "builtin": True, "enabled": True},
            message="Built-in channel: approvers in scope are emailed about new and escalated requests",
        )
    return channel


def _builtin_channels() -> QuerySet[NotificationChannel]:
    return NotificationChannel.objects.filter(kind=ChannelKind.EMAIL, target="").order_by("pk")


def approvers_in_scope(approval: ApprovalRequest, *, event: str) -> list[User]:
    """Whom to email about an asking event: active people with an email address who may
    answer the request.

    First tier: approvers whose role covers the request's department or team; if none of them
    can be reached, the second tier rather than nobody. Second tier (escalated, or a request
    at tier 2): organisation-wide approvers and admins (superusers included). Both: anyone an
    active delegation lends such authority to. For a critical request, never the agent's owner
    nor the person the run acts for (they cannot approve it), nor their delegates.
    """
    excluded = _not_allowed(approval)

    def reachable(user_ids: set[int]) -> list[User]:
        people = reachable_people(_delegating(approval, user_ids))
        return [person for person in people if person.pk not in excluded]

    second_tier = event == "escalated" or approval.tier >= 2
    people = [] if second_tier else reachable(_tier_one(approval))
    return people or reachable(_tier_two())


def _tier_one(approval: ApprovalRequest) -> set[int]:
    scope = Q(department_id=approval.department_id)
    if approval.team_id is not None:
        scope |= Q(team_id=approval.team_id)
    return set(
        RoleAssignment.objects.filter(scope, role=Role.APPROVER).values_list("user_id", flat=True)
    )


def _tier_two() -> set[int]:
    org_wide = RoleAssignment.objects.filter(
        role__in=[Role.APPROVER, Role.ADMIN], department__isnull=True, team__isnull=True
    ).values_list("user_id", flat=True)
    superusers = User.objects.filter(is_superuser=True).values_list("pk", flat=True)
    return set(org_wide) | set(superusers)


def _not_allowed(approval: ApprovalRequest) -> set[int]:
    if approval.risk_class != RiskClass.CRITICAL:
        return set()
    return {pk for pk in (approval.owner_id, approval.on_behalf_of_id) if pk is not None}


def _delegating(approval: ApprovalRequest, user_ids: set[int]) -> set[int]:
    """``user_ids`` and whoever holds their authority by an active delegation now."""
    lenders = user_ids - _not_allowed(approval)
    if not lenders:
        return user_ids
    now = timezone.now()
    delegates = ApprovalDelegation.objects.filter(
        delegator_id__in=lenders, revoked_at__isnull=True, starts_at__lte=now, ends_at__gt=now
    ).values_list("delegate_id", flat=True)
    return user_ids | set(delegates)


# --- sending -------------------------------------------------------------------------------------


def delivery_send(*, delivery_id: int) -> bool:
    """Send one delivery: True if it went out now, False if there was nothing to do (sent or
    given up already) or it failed for good.

    The claim is a conditional UPDATE (status queued or failed; attempts + 1) inside the
    transaction that also records the outcome, so the row stays locked while it is sent: a
    second worker with the same delivery waits, then finds it sent and does nothing. The
    lock lasts at most the send's timeout (APPROVAL_WEBHOOK_TIMEOUT_SECONDS for webhooks,
    EMAIL_TIMEOUT or 30 s for email).
    A retryable failure is recorded as ``failed`` and then raised as
    :class:`RetryableDeliveryError` (after the commit) so the task retries; any other failure
    is recorded as ``gave_up``.
    """
    return delivery_attempt(
        NotificationDelivery,
        delivery_id,
        load=lambda queryset: queryset.select_related(
            "channel", "approval__agent", "approval__tool", "approval__owner",
            "approval__on_behalf_of", "approval__department", "approval__team",
        ),
        send=_send_delivery,
        describe=lambda d: f"approvals: delivery {d.pk} ({d.channel.name}, {d.event})",
    )  # fmt: skip


def _send_delivery(delivery: NotificationDelivery) -> None:
    if not delivery.channel.enabled:
        raise DeliveryError("The channel was disabled before this was sent.", retryable=False)
    _send(delivery.channel, build_notice(delivery.approval, delivery.event), delivery)


def delivery_attempt(
    model: Any,
    pk: int,
    *,
    load: Callable[[QuerySet[Any]], QuerySet[Any]],
    send: Callable[[Any], None],
    describe: Callable[[Any], str],
) -> bool:
    """One attempt at a delivery row (an approval's delivery, a kill's or a budget alert's
    notice): claim it, ``send`` it, record how it went. True if it went out now, False if there
    was nothing to do (sent or given up already) or it failed for good.

    The claim is a conditional UPDATE (status queued or failed; attempts + 1) inside the
    transaction that also records the outcome, so the row stays locked while it is sent: a
    second worker with the same row waits, then finds it sent and does nothing. ``load`` adds
    what sending reads to the row's query. A retryable failure is recorded as ``failed`` and
    then raised as :class:`RetryableDeliveryError` (after the commit) so the task retries.
    """
    failure: DeliveryError | None = None
    with transaction.atomic():
        claimed = model.objects.filter(pk=pk, status__in=CLAIMABLE).update(
            attempts=F("attempts") + 1
        )
        if not claimed:
            return False
        row = load(model.objects.all()).get(pk=pk)
        try:
            send(row)
        except DeliveryError as exc:
            failure = exc
        delivery_record(row, failure)
    if failure is not None:
        logger.warning("%s failed: %s", describe(row), failure.message)
        if failure.retryable:
            raise RetryableDeliveryError(failure.message)
        return False
    return True


def delivery_record(row: Any, failure: DeliveryError | None) -> None:
    """Record how one attempt went on a delivery row (an approval's, a kill's, a budget
    alert's notice: each has ``status``, ``last_error`` and ``sent_at``): sent, failed (to be
    retried) or given up."""
    if failure is None:
        status, error, sent_at = DeliveryStatus.SENT, "", timezone.now()
    else:
        status = DeliveryStatus.FAILED if failure.retryable else DeliveryStatus.GAVE_UP
        error, sent_at = bounded(failure.message), None
    type(row).objects.filter(pk=row.pk).update(status=status, last_error=error, sent_at=sent_at)
    row.status, row.last_error, row.sent_at = status, error, sent_at


def delivery_row_give_up(model: Any, pk: int) -> bool:
    """After the last retry: a delivery row still failing is given up (its error is kept)."""
    return bool(
        model.objects.filter(pk=pk, status__in=CLAIMABLE).update(status=DeliveryStatus.GAVE_UP)
    )


def delivery_give_up(*, delivery_id: int) -> bool:
    return delivery_row_give_up(NotificationDelivery, delivery_id)


def bounded(text: str, limit: int = ERROR_MAX) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def channel_send_test(*, channel: NotificationChannel, actor: User) -> None:
    """Send a test message on ``channel`` now (raises :class:`DeliveryError`). The built-in
    approvers channel sends it to ``actor``'s own address."""
    notice = trial_notice(actor)
    if is_approvers_channel(channel):
        if not actor.email:
            raise DeliveryError(
                "Your account has no email address to send the test to.", retryable=False
            )
        send_email([actor.email], notice, separately=False)
        return
    _send(channel, notice, None)


def _send(
    channel: NotificationChannel, notice: Notice, delivery: NotificationDelivery | None
) -> None:
    if channel.kind == ChannelKind.EMAIL:
        if is_approvers_channel(channel):
            assert delivery is not None  # the test path sends to the admin instead
            people = approvers_in_scope(delivery.approval, event=delivery.event)
            if not people:
                raise DeliveryError(
                    "No approver in scope has an email address: add one to their accounts.",
                    retryable=False,
                )
            send_email([person.email for person in people], notice, separately=True)
        else:
            send_email(email_addresses(channel.target), notice, separately=False)
    elif channel.kind == ChannelKind.SLACK:
        post_json(channel.target, json_bytes(slack_payload(notice)), {})
    elif channel.kind == ChannelKind.WEBHOOK:
        body = json_bytes(webhook_payload(notice))
        delivered = str(delivery.pk) if delivery is not None else "test"
        post_json(
            channel.target,
            body,
            signed_headers(channel.secret, body, event=notice.event, delivery=delivered),
        )
    else:
        raise DeliveryError(f"Unknown channel kind {channel.kind!r}.", retryable=False)


def email_addresses(target: str) -> list[str]:
    return [part.strip() for part in target.split(",") if part.strip()]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed by the secret."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def signed_headers(secret: str, body: bytes, *, event: str, delivery: str) -> dict[str, str]:
    """The headers of a signed webhook (also the kill switch's): what it is, which delivery
    (the same on every retry), when it was signed, and the signature over both."""
    timestamp = str(int(time.time()))
    return {
        "X-Tether-Event": event,
        "X-Tether-Delivery": delivery,
        "X-Tether-Timestamp": timestamp,
        "X-Tether-Signature": signature(secret, timestamp, body),
    }


def json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def send_email(
    addresses: list[str],
    notice: Notice,
    *,
    separately: bool,
    template: str = "approvals/notifications/email",
) -> None:
    """One message to every address of a channel (a team list), or one to each approver.
    ``template`` names the ``.txt`` and ``.html`` pair the message is rendered from."""
    if not addresses:
        raise DeliveryError("The channel has no email address.", retryable=False)
    subject = bounded(f"[Tether] {notice.headline}", 200)
    text = render_to_string(f"{template}.txt", {"notice": notice})
    html = render_to_string(f"{template}.html", {"notice": notice})
    groups = [[address] for address in addresses] if separately else [addresses]
    try:
        with get_connection(timeout=getattr(settings, "EMAIL_TIMEOUT", None) or 30) as mail:
            for recipients in groups:
                send_mail(
                    subject,
                    text,
                    settings.DEFAULT_FROM_EMAIL,
                    recipients,
                    html_message=html,
                    connection=mail,
                )
    except (smtplib.SMTPRecipientsRefused, BadHeaderError, ValueError) as exc:
        raise DeliveryError(f"Email refused: {exc}", retryable=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"Email could not be sent: {exc}", retryable=True) from exc


def post_json(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float | None = None, keep: int = 0
) -> tuple[int, str]:
    """POST JSON to an http(s) URL; a 2xx is success: its status and the first ``keep``
    characters of its answer come back. Anything else raises :class:`DeliveryError` (with the
    status and the start of the answer when there was one). Redirects are not followed (a
    moved receiver is a configuration change, not something to chase)."""
    import httpx

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryError("Only http:// and https:// webhook URLs are sent to.", retryable=False)
    timeout = timeout or settings.APPROVAL_WEBHOOK_TIMEOUT_SECONDS
    host = parts.hostname
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        with httpx.stream(
            "POST", url, content=body, headers=all_headers, timeout=timeout, follow_redirects=False
        ) as response:
            status = response.status_code
            if 200 <= status < 300:
                return status, _snippet(response, keep) if keep else ""
            answer = _snippet(response, max(keep, RESPONSE_SNIPPET_MAX))
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{host} did not answer within {timeout} s.", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise DeliveryError(f"Could not reach {host}: {exc}", retryable=True) from exc
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    hint = " (redirects are not followed: use the final URL)" if 300 <= status < 400 else ""
    snippet = bounded(answer[:RESPONSE_SNIPPET_MAX], RESPONSE_SNIPPET_MAX)
    raise DeliveryError(
        f"HTTP {status} from {host}{hint}" + (f": {snippet}" if snippet else ""),
        retryable=retryable,
        status=status,
        body=answer[:keep],
    )


def _snippet(response: Any, limit: int) -> str:
    """The start of a response's body (never all of it)."""
    read = b""
    try:
        for chunk in response.iter_bytes():
            read += chunk
            if len(read) >= limit:
                break
    except Exception:  # the body is a courtesy; the status already says how it went
        return ""
    return read[:limit].decode("utf-8", "replace")[:limit]


# --- the message ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """One event of one request as every channel tells it: a headline, facts in order, the
    link, and the JSON of the request for webhooks."""

    event: str
    headline: str
    url: str
    event_id: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    approval: dict[str, Any] | None = None


def public_url(path: str) -> str:
    return f"{settings.TETHER_PUBLIC_URL.rstrip('/')}{path}"


def approval_link(approval_id: Any) -> str:
    """The absolute link to the request's page, e.g. https://tether.example.com/approvals/<id>/."""
    return public_url(reverse("approvals:detail", args=[approval_id]))


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _deadline(moment: datetime) -> str:
    left = moment - timezone.now()
    minutes = int(left.total_seconds() // 60)
    at = timezone.localtime(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if minutes < 0:
        return f"{at} (passed)"
    if minutes < 120:
        return f"{at} (in {minutes} min)"
    return f"{at} (in {minutes // 60} h)"


def build_notice(approval: ApprovalRequest, event: str) -> Notice:
    """What every channel says about ``event`` of ``approval``: who, what, why, the blast
    radius, the deadline and the link. The arguments are not sent (they may hold personal
    data and leave for third parties such as Slack); the linked page shows them."""
    agent, tool = approval.agent, approval.tool
    step = f"{tool.slug}.{approval.tool_action}"
    url = approval_link(approval.pk)
    owner = approval.owner.get_username() if approval.owner else None
    on_behalf_of = approval.on_behalf_of.get_username() if approval.on_behalf_of else None
    risk = approval.get_risk_class_display()
    if approval.approvals_required > 1:
        risk += f" · needs {approval.approvals_required} approvers"
    reason = bounded(approval.reason, REASON_SHOWN_MAX) if approval.reason else ""
    blast = (
        approval.blast_radius.get("summary") if isinstance(approval.blast_radius, dict) else None
    )
    scope = approval.department.name + (f" / {approval.team.name}" if approval.team else "")
    facts = [
        ("Agent", f"{agent.name} ({agent.slug}) v{approval.agent_version}"),
        ("Owner", owner or "nobody"),
        ("On behalf of", on_behalf_of or "nobody (the agent's own task)"),
        ("Action", step),
        ("Risk", risk),
        ("Environment", approval.environment),
        ("Department", scope),
        ("Reason", reason or "none given"),
        ("Blast radius", str(blast) if blast else "not assessed"),
    ]
    decided_by = ""
    if event in ASKING_EVENTS:
        facts.append(("Deadline", _deadline(approval.expires_at)))
        if event == "escalated":
            facts.append(("Tier", "second: organisation-wide approvers and admins"))
    else:
        vote = (
            approval.votes.exclude(verdict=Verdict.ESCALATE).order_by("-created_at", "-id").first()
        )
        decided_by = vote.approver_name if vote else ""
        facts.append(("Decided by", decided_by or "—"))
        if approval.feedback:
            facts.append(("Feedback", bounded(approval.feedback, REASON_SHOWN_MAX)))
        if event == "approved":
            facts.append(("Use by", _deadline(approval.expires_at)))
    payload = {
        "id": str(approval.pk),
        "url": url,
        "status": approval.status,
        "tier": approval.tier,
        "approvals_required": approval.approvals_required,
        "agent": {"slug": agent.slug, "name": agent.name, "version": approval.agent_version},
        "owner": owner,
        "on_behalf_of": on_behalf_of,
        "department": approval.department.slug,
        "team": approval.team.slug if approval.team else None,
        "environment": approval.environment,
        "tool": tool.slug,
        "action": approval.tool_action,
        "risk_class": approval.risk_class,
        "reason": reason,
        "blast_radius_summary": blast,
        "created_at": _when(approval.created_at),
        "expires_at": _when(approval.expires_at),
        "decided_at": _when(approval.decided_at),
        "decided_by": decided_by or None,
        "feedback": approval.feedback,
    }
    headline = HEADLINES[event].format(agent=agent.slug, step=f"{step} ({approval.risk_class})")
    return Notice(
        event=event,
        headline=headline,
        url=url,
        event_id=f"{approval.pk}:{event}",
        facts=facts,
        approval=payload,
    )


def trial_notice(actor: User) -> Notice:
    """A test message: says who sent it, links to the inbox, carries no request."""
    sent = timezone.now()
    return Notice(
        event="test",
        headline=HEADLINES["test"],
        url=public_url(reverse("approvals:inbox")),
        event_id=f"test:{int(sent.timestamp())}",
        facts=[
            ("Sent by", actor.get_username()),
            ("Sent at", timezone.localtime(sent, UTC).strftime("%Y-%m-%d %H:%M UTC")),
            ("Why", "An admin pressed “Send test” on the notification channels page."),
        ],
    )


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(notice: Notice, *, link_text: str = "Open the request") -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification and fallback) and blocks:
    a section with the facts in mrkdwn and a link button, the link also in the text so
    Slack-compatible receivers without blocks still show it."""
    lines = [f"*{_mrkdwn(notice.headline)}*"]
    lines += [f"*{_mrkdwn(label)}:* {_mrkdwn(value)}" for label, value in notice.facts]
    lines.append(f"<{notice.url}|{link_text} in Tether>")
    body = "\n".join(lines)
    if len(body) > SLACK_TEXT_MAX:
        body = body[: SLACK_TEXT_MAX - len(notice.url) - 40] + f"…\n<{notice.url}|Open in Tether>"
    return {
        "text": f"{notice.headline} — {notice.url}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": link_text},
                        "url": notice.url,
                        "style": "primary",
                    }
                ],
            },
        ],
    }


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The generic webhook's body. ``id`` names the event (the same on every retry and every
    channel: receivers deduplicate on it); ``approval`` is null for a test message."""
    return {
        "type": f"tether.approval.{notice.event}",
        "id": notice.event_id,
        "approval": notice.approval,
        "url": notice.url,
        "summary": notice.headline,
    }


# --- who is told (the kill switch's, the budget and drift alerts') ------------------------------


def reachable_people(user_ids: set[int]) -> list[User]:
    """The active ones with an email address, each address once."""
    if not user_ids:
        return []
    people = User.objects.filter(pk__in=user_ids, is_active=True).exclude(email="")
    seen: set[str] = set()
    found = []
    for person in people.order_by("username"):
        address = person.email.strip()
        if address and address.casefold() not in seen:
            seen.add(address.casefold())
            found.append(person)
    return found


def department_channels(department_id: int | None) -> QuerySet[NotificationChannel]:
    """The enabled channels of a department and the organisation-wide ones, as the kill
    switch and the alerts pick them: not an email channel with no address, and not the
    built-in approvers' channel (nobody is asked to approve anything)."""
    in_scope = Q(department__isnull=True)
    if department_id is not None:
        in_scope |= Q(department_id=department_id)
    return (
        NotificationChannel.objects.filter(enabled=True)
        .exclude(kind=ChannelKind.EMAIL, target="")
        .filter(in_scope)
        .order_by("pk")
    )
