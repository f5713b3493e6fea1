"""Reads about people and the organisation, scoped by the requesting user."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from .constants import Role
from .models import Department, PersonalToken, RoleAssignment, Team, User
from .permissions import scope_of


def department_list(*, user: Any) -> QuerySet[Department]:
    """Departments with their teams. Anyone holding a role sees the organisation's shape (an
    owner picks a department, finance reads costs by it); outsiders see nothing."""
    if not scope_of(user).has_any_role:
        return Department.objects.none()
    teams = Team.objects.order_by("name")
    return Department.objects.prefetch_related(Prefetch("teams", queryset=teams)).order_by("name")


def department_get(*, user: Any, slug: str) -> Department:
    return get_object_or_404(department_list(user=user), slug=slug)


def role_assignments(*, user: Any) -> QuerySet[RoleAssignment]:
    """The user's own roles with their scope."""
    return (
        RoleAssignment.objects.filter(user_id=user.pk)
        .select_related("department", "team", "team__department")
        .order_by("role", "department__name", "team__name")
    )


def token_list(*, user: Any) -> QuerySet[PersonalToken]:
    """The user's own personal API tokens, newest first, revoked ones included."""
    return PersonalToken.objects.filter(user_id=user.pk).order_by("-created_at", "-pk")


def token_get(*, user: Any, token_id: int) -> PersonalToken:
    """One of the user's own tokens; anyone else's is a 404."""
    return get_object_or_404(token_list(user=user), pk=token_id)


def admin_contacts(*, limit: int = 5) -> list[User]:
    """Whom a person without a role should ask: active organisation-wide admins."""
    admins = User.objects.filter(is_active=True).filter(
        Q(is_superuser=True)
        | Q(
            role_assignments__role=Role.ADMIN,
            role_assignments__department__isnull=True,
            role_assignments__team__isnull=True,
        )
    )
    return list(admins.distinct().order_by("username")[:limit])
