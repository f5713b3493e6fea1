"""Who a management command acts as: ``--as USERNAME``, or the one admin there is."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db.models import Q

from apps.accounts.constants import Role
from apps.accounts.models import User


def command_actor(username: str | None) -> User:
    """Registry changes are always made by a person, so commands need one to act as."""
    if username:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        return user
    admins = list(
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(
                role_assignments__role=Role.ADMIN,
                role_assignments__department__isnull=True,
                role_assignments__team__isnull=True,
            )
        )
        .distinct()
        .order_by("username")
    )
    if len(admins) == 1:
        return admins[0]
    if not admins:
        raise CommandError("There is no admin to act as; pass --as USERNAME.")
    names = ", ".join(a.username for a in admins)
    raise CommandError(f"There are several admins ({names}); choose one with --as USERNAME.")
