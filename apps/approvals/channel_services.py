"""Writes of notification channels, by admins only, each with its audit event: add a channel,
enable or disable it, delete it, send a test message. The rules on targets live here
(:func:`clean_target`); the console form only parses input.

Secrets never reach the audit log, and webhook URLs are written there shortened
(:func:`target_shown`): a Slack incoming-webhook URL is itself a credential.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import transaction

from apps.accounts.models import Department, User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted

from .models import ChannelKind, NotificationChannel
from .notify import (
    APPROVERS_CHANNEL_NAME,
    CHANNEL_TARGET,
    DeliveryError,
    channel_send_test,
    email_addresses,
    is_approvers_channel,
)

NAME_MAX = 100
TARGET_MAX = 500
SECRET_MIN = 16
SECRET_MAX = 200
ADDRESSES_MAX = 50
URL_PATH_SHOWN = 16
_ADDRESS_SEPARATORS = re.compile(r"[,;\s]+")
_url_validator = URLValidator(schemes=["http", "https"])


@dataclass(frozen=True)
class ChannelTestResult:
    ok: bool
    message: str


def _require_admin(actor: User) -> None:
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only admins configure notification channels.")


def clean_target(kind: str, target: str) -> str:
    """The target in its stored form, or an ApplicationError on ``target`` saying what is
    wrong: each address checked for an email channel, an http(s) URL for the webhooks."""
    target = (target or "").strip()
    if not target:
        what = "one or more email addresses" if kind == ChannelKind.EMAIL else "the webhook URL"
        raise _target_error(f"Enter {what}.")
    if kind == ChannelKind.EMAIL:
        addresses = [a for a in _ADDRESS_SEPARATORS.split(target) if a]
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            listed = ", ".join(f"“{a}”" for a in bad[:5])
            raise _target_error(
                f"Not an email address: {listed}. Separate addresses with commas, "
                "e.g. oncall@example.com, risk@example.com."
            )
        if len(addresses) > ADDRESSES_MAX:
            raise _target_error(f"At most {ADDRESSES_MAX} addresses; use a mailing list for more.")
        target = ", ".join(dict.fromkeys(addresses))  # in order, each once
    else:
        try:
            _url_validator(target)
        except ValidationError:
            example = (
                "https://hooks.slack.com/services/T000/B000/XXXX"
                if kind == ChannelKind.SLACK
                else "https://hooks.example.com/tether"
            )
            raise _target_error(
                f"Enter a full http:// or https:// URL, such as {example}."
            ) from None
    if len(target) > TARGET_MAX:
        raise _target_error(f"Keep it under {TARGET_MAX} characters.")
    return target


def _target_error(message: str) -> ApplicationError:
    return ApplicationError(message, details={"target": [message]})


def target_shown(channel: NotificationChannel) -> str:
    """What may be shown of the target: email addresses in full; of a URL its scheme, host
    and the start of its path (the rest of a Slack URL is the credential), never its query."""
    if is_approvers_channel(channel):
        return "the approvers in scope of each request"
    if channel.kind == ChannelKind.EMAIL:
        return channel.target
    parts = urlsplit(channel.target)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    path = parts.path
    if len(path) > URL_PATH_SHOWN:
        path = path[:URL_PATH_SHOWN] + "…"
    return f"{parts.scheme}://{host}{path}" + ("?…" if parts.query else "")


def _channel_after(channel: NotificationChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "kind": channel.kind,
        "target": target_shown(channel),
        "department": channel.department.slug if channel.department else None,
        "enabled": channel.enabled,
        "signed": bool(channel.secret),
    }


def channel_create(
    *,
    actor: User,
    name: str,
    kind: str,
    target: str,
    secret: str = "",
    department: Department | None = None,
) -> NotificationChannel:
    """Add a channel. A generic webhook is always signed: without a secret given, one is
    generated (the caller shows it once). Email and Slack channels take no secret."""
    _require_admin(actor)
    name = " ".join((name or "").split())
    secret = (secret or "").strip()
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Name the channel, e.g. “Claims approvers” or “#approvals”."]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"Keep the name under {NAME_MAX} characters."]
    elif name.casefold() == APPROVERS_CHANNEL_NAME.casefold():
        errors["name"] = ["That name is the built-in channel's; choose another."]
    elif NotificationChannel.objects.filter(name__iexact=name).exists():
        errors["name"] = [f"A channel named “{name}” exists already."]
    if kind not in ChannelKind.values:
        errors["kind"] = ["Choose email, Slack-compatible webhook or generic webhook."]
    else:
        try:
            target = clean_target(kind, target)
        except ApplicationError as exc:
            errors.update(exc.details)
    if kind == ChannelKind.WEBHOOK:
        if secret and not SECRET_MIN <= len(secret) <= SECRET_MAX:
            errors["secret"] = [
                f"Use {SECRET_MIN} to {SECRET_MAX} characters, or leave it empty to have one generated."
            ]
        secret = secret or secrets.token_urlsafe(32)
    elif secret:
        errors["secret"] = [
            "Only generic webhooks are signed; leave the secret empty for email and Slack."
        ]
    if errors:
        raise ApplicationError("The channel was not added.", details=errors)
    with transaction.atomic():
        channel = NotificationChannel.objects.create(
            name=name, kind=kind, target=target, secret=secret, department=department
        )
        audit_record(
            actor=Actor.user(actor),
            action="approval.channel.created",
            target_type=CHANNEL_TARGET,
            target_id=channel.pk,
            target_repr=str(channel),
            after=_channel_after(channel),
            message=f"Approval notifications go to {channel.name} ({channel.get_kind_display()})"
            + (f" for {department.name}" if department else ""),
        )
    return channel


def channel_set_enabled(
    *, actor: User, channel: NotificationChannel, enabled: bool
) -> NotificationChannel:
    """Switch a channel on or off; deliveries already planned for a disabled channel give up."""
    _require_admin(actor)
    with transaction.atomic():
        changed = (
            NotificationChannel.objects.filter(pk=channel.pk)
            .exclude(enabled=enabled)
            .update(enabled=enabled)
        )
        channel.enabled = enabled
        if changed:
            state = "enabled" if enabled else "disabled"
            audit_record(
                actor=Actor.user(actor),
                action=f"approval.channel.{state}",
                target_type=CHANNEL_TARGET,
                target_id=channel.pk,
                target_repr=str(channel),
                before={"enabled": not enabled},
                after={"enabled": enabled},
                message=f"Notification channel {channel.name} {state}",
            )
    return channel


def channel_delete(*, actor: User, channel: NotificationChannel) -> None:
    """Delete a channel and its delivery history. The built-in approvers channel is only
    ever disabled: deleting it would bring it back, enabled, with the next request."""
    _require_admin(actor)
    if is_approvers_channel(channel):
        raise ApplicationError(
            "The built-in channel cannot be deleted; disable it to stop emailing approvers directly."
        )
    with transaction.atomic():
        audit_record(
            actor=Actor.user(actor),
            action="approval.channel.deleted",
            target_type=CHANNEL_TARGET,
            target_id=channel.pk,
            target_repr=str(channel),
            before=_channel_after(channel),
            message=f"Notification channel {channel.name} deleted",
        )
        channel.delete()


def channel_test(*, actor: User, channel: NotificationChannel) -> ChannelTestResult:
    """Send a test message on ``channel`` now (enabled or not) and say how it went; the
    built-in approvers channel sends it to the admin's own address."""
    _require_admin(actor)
    try:
        channel_send_test(channel=channel, actor=actor)
    except DeliveryError as exc:
        result = ChannelTestResult(False, f"The test to {channel.name} failed: {exc.message}")
    else:
        if is_approvers_channel(channel):
            where = actor.email
        elif channel.kind == ChannelKind.EMAIL:
            where = ", ".join(email_addresses(channel.target))
        else:
            where = target_shown(channel)
        result = ChannelTestResult(True, f"Sent a test message to {channel.name} ({where}).")
    with transaction.atomic():
        audit_record(
            actor=Actor.user(actor),
            action="approval.channel.tested",
            target_type=CHANNEL_TARGET,
            target_id=channel.pk,
            target_repr=str(channel),
            after={"ok": result.ok, "message": result.message[:500]},
            message=result.message[:500],
        )
    return result
