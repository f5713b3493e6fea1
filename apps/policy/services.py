"""Every write of admin policies: admins only, validated against the Cedar schema, versioned and
audited in one transaction, and followed by a policy generation bump once it commits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.accounts.models import User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted

from .compiler import PolicyTextInvalid, parse_policy_text
from .constants import COMMENT_MAX
from .generation import bump_policy_generation
from .models import Policy, PolicyVersion

CREATE_FIELDS = ("name", "slug", "description", "text", "enabled")
UPDATE_FIELDS = ("name", "description", "text", "enabled")


def _require_admin(actor: User) -> None:
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only admins write policies.")


def policy_check_text(text: str, *, slug: str = "draft") -> None:
    """Raise an ApplicationError listing every problem in ``text`` with its line and column."""
    try:
        parse_policy_text(text, slug=slug or "draft")
    except PolicyTextInvalid as exc:
        messages = [str(p) for p in exc.problems]
        raise ApplicationError(
            f"The policy text is not valid Cedar for Tether's schema: {messages[0]}",
            details={"text": messages, "problems": [p.as_dict() for p in exc.problems]},
        ) from exc


def _state(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "slug": policy.slug,
        "description": policy.description,
        "enabled": policy.enabled,
        "text": policy.text,
    }


def _unknown(data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed) - {"comment"})
    if unknown:
        raise ApplicationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            details={k: ["Unknown field."] for k in unknown},
        )


def _full_clean(policy: Policy) -> None:
    try:
        policy.full_clean(exclude=["created_by", "updated_by"])
    except ValidationError as exc:
        details = exc.message_dict
        field, messages = next(iter(details.items()))
        label = "" if field == "__all__" else f"{field}: "
        raise ApplicationError(f"{label}{messages[0]}", details=details) from exc


def _version(policy: Policy, actor: User, comment: str) -> PolicyVersion:
    latest = policy.versions.order_by("-number").first()
    return PolicyVersion.objects.create(
        policy=policy,
        number=(latest.number + 1) if latest else 1,
        text=policy.text,
        author=actor,
        author_name=actor.get_username(),
        comment=comment[:COMMENT_MAX],
    )


@transaction.atomic
def policy_create(*, actor: User, data: Mapping[str, Any]) -> Policy:
    """Write a new policy as version 1. ``data``: name, slug, text, and optionally
    description, enabled (default true) and comment."""
    _require_admin(actor)
    _unknown(data, CREATE_FIELDS)
    policy = Policy(
        name=data.get("name", ""),
        slug=data.get("slug", ""),
        description=data.get("description", ""),
        text=data.get("text", ""),
        enabled=data.get("enabled", True),
        created_by=actor,
        updated_by=actor,
    )
    _full_clean(policy)
    policy_check_text(policy.text, slug=policy.slug)
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        raise ApplicationError(
            "That slug is already taken.", details={"slug": ["That slug is already taken."]}
        ) from exc
    version = _version(policy, actor, data.get("comment", "") or "Created")
    audit_record(
        actor=Actor.user(actor),
        action="policy.created",
        target_type="policy",
        target_id=policy.pk,
        target_repr=policy.slug,
        after={**_state(policy), "version": version.number},
        message=version.comment,
    )
    bump_policy_generation()
    return policy


@transaction.atomic
def policy_update(
    *, actor: User, policy: Policy, data: Mapping[str, Any], comment: str = ""
) -> Policy:
    """Change a policy. A change of text is validated and written as a new version; the slug
    never changes (decisions on record name statements by it)."""
    _require_admin(actor)
    if "slug" in data and data["slug"] != policy.slug:
        raise ApplicationError(
            "A policy's slug cannot change: recorded decisions name its statements by it.",
            details={"slug": ["Cannot be changed."]},
        )
    _unknown(data, (*UPDATE_FIELDS, "slug"))
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    before = _state(policy)
    for key in UPDATE_FIELDS:
        if key in data:
            setattr(policy, key, data[key])
    comment = comment or data.get("comment", "") or ""
    after = _state(policy)
    if after == before:
        return policy
    _full_clean(policy)
    text_changed = after["text"] != before["text"]
    if text_changed:
        policy_check_text(policy.text, slug=policy.slug)
    policy.updated_by = actor
    policy.save()
    version = _version(policy, actor, comment or "Edited") if text_changed else None
    changed = sorted(k for k in after if after[k] != before[k])
    audit_record(
        actor=Actor.user(actor),
        action="policy.updated",
        target_type="policy",
        target_id=policy.pk,
        target_repr=policy.slug,
        before=before,
        after={**after, **({"version": version.number} if version else {})},
        message=comment or f"Changed {', '.join(changed)}",
    )
    bump_policy_generation()
    return policy


def policy_disable(*, actor: User, policy: Policy, comment: str = "") -> Policy:
    """Take a policy out of every decision; its text and history stay."""
    return policy_update(
        actor=actor, policy=policy, data={"enabled": False}, comment=comment or "Disabled"
    )


def policy_enable(*, actor: User, policy: Policy, comment: str = "") -> Policy:
    """Put a disabled policy back into force. Its text is checked again: the schema may have
    moved on since it was disabled."""
    _require_admin(actor)
    policy_check_text(policy.text, slug=policy.slug)
    return policy_update(
        actor=actor, policy=policy, data={"enabled": True}, comment=comment or "Enabled"
    )
