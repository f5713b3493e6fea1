"""Writes for people: roles and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted
from apps.common.tokens import IssuedToken, issue_token

from .constants import Role
from .models import Department, PersonalToken, RoleAssignment, Team, User
from .permissions import forget_scope, scope_of

TOKEN_KIND = "user"
MAX_ACTIVE_TOKENS = 20


@transaction.atomic
def role_assign(
    *,
    actor: User | None,
    user: User,
    role: str,
    department: Department | None = None,
    team: Team | None = None,
) -> RoleAssignment:
    """Give a user a role. ``actor=None`` is Tether itself (demo loading, first setup)."""
    if actor is not None and not scope_of(actor).is_admin:
        raise NotPermitted("Only admins assign roles.")
    if department and team:
        raise ApplicationError("Scope a role to a department or a team, not both.")
    if role == Role.ADMIN and (department or team):
        raise ApplicationError(
            "The admin role is organisation-wide; leave department and team empty."
        )
    assignment, _ = RoleAssignment.objects.get_or_create(
        user=user, role=role, department=department, team=team
    )
    if role == Role.ADMIN and not (user.is_staff and user.is_superuser):
        # Admins administer everything, the Django admin included.
        user.is_staff = user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
    audit_record(
        actor=Actor.user(actor) if actor else Actor.system(),
        action="accounts.role.assigned",
        target_type="user",
        target_id=user.pk,
        target_repr=user.get_username(),
        after={
            "role": role,
            "department": department and department.slug,
            "team": team and team.slug,
        },
    )
    forget_scope(user)
    return assignment


@transaction.atomic
def token_create(
    *, user: User, name: str, expires_at: datetime | None = None
) -> tuple[PersonalToken, IssuedToken]:
    """Issue a personal API token; the plaintext is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ApplicationError(
            "Give the token a name of 1-100 characters.", details={"name": ["Required."]}
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError(
            "The expiry must be in the future.", details={"expires_at": ["In the past."]}
        )
    if user.api_tokens.filter(revoked_at__isnull=True).count() >= MAX_ACTIVE_TOKENS:
        raise ApplicationError(
            f"You already have {MAX_ACTIVE_TOKENS} active tokens; revoke one first."
        )
    issued = issue_token(TOKEN_KIND)
    token = PersonalToken.objects.create(
        user=user, name=name, lookup=issued.lookup, digest=issued.digest, expires_at=expires_at
    )
    audit_record(
        actor=Actor.user(user),
        action="accounts.token.created",
        target_type="personal_token",
        target_id=token.pk,
        target_repr=str(token),
        after={"name": name},
    )
    return token, issued


@transaction.atomic
def token_revoke(*, actor: User, token: PersonalToken) -> None:
    if token.user_id != actor.pk and not scope_of(actor).is_admin:
        raise NotPermitted("You can revoke only your own tokens.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=Actor.user(actor),
            action="accounts.token.revoked",
            target_type="personal_token",
            target_id=token.pk,
            target_repr=str(token),
        )
