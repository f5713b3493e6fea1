"""The permission gate: what a person may read and change, computed once per request.

Rules (docs/permissions.md):
- admins (the ``admin`` role organisation-wide, or a superuser) may read and change everything;
- any role reads within its scope: organisation-wide, a department, or a team;
- owners also read and change the agents they own, and create agents in their scope;
- a user with no role is an outsider: sees nothing, and objects answer 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .constants import Role


@dataclass(frozen=True)
class Scope:
    """Where one user's roles reach."""

    user_id: int | None
    is_admin: bool = False
    org_wide_roles: frozenset[str] = frozenset()
    department_roles: dict[int, frozenset[str]] = field(default_factory=dict)
    team_roles: dict[int, frozenset[str]] = field(default_factory=dict)

    @property
    def has_any_role(self) -> bool:
        return bool(
            self.is_admin or self.org_wide_roles or self.department_roles or self.team_roles
        )

    @property
    def reads_everything(self) -> bool:
        return self.is_admin or bool(self.org_wide_roles)

    def roles(self) -> set[str]:
        found = set(self.org_wide_roles)
        for roles in (*self.department_roles.values(), *self.team_roles.values()):
            found |= roles
        if self.is_admin:
            found.add(Role.ADMIN)
        return found

    def has_role(self, role: str) -> bool:
        return role in self.roles()

    def covers(self, role: str, *, department_id: int | None, team_id: int | None) -> bool:
        """Does this user hold ``role`` over something in this department/team?"""
        if self.is_admin or role in self.org_wide_roles:
            return True
        if department_id is not None and role in self.department_roles.get(department_id, ()):
            return True
        return team_id is not None and role in self.team_roles.get(team_id, ())


_ANONYMOUS = Scope(user_id=None)


def scope_of(user: Any) -> Scope:
    """The user's scope, cached on the user object for the rest of the request."""
    if user is None or not getattr(user, "is_authenticated", False):
        return _ANONYMOUS
    cached = getattr(user, "_tether_scope", None)
    if cached is not None:
        return cached
    org: set[str] = set()
    departments: dict[int, set[str]] = {}
    teams: dict[int, set[str]] = {}
    for role, department_id, team_id in user.role_assignments.values_list(
        "role", "department_id", "team_id"
    ):
        if team_id is not None:
            teams.setdefault(team_id, set()).add(role)
        elif department_id is not None:
            departments.setdefault(department_id, set()).add(role)
        else:
            org.add(role)
    scope = Scope(
        user_id=user.pk,
        is_admin=bool(user.is_superuser) or Role.ADMIN in org,
        org_wide_roles=frozenset(org),
        department_roles={k: frozenset(v) for k, v in departments.items()},
        team_roles={k: frozenset(v) for k, v in teams.items()},
    )
    user._tether_scope = scope
    return scope


def forget_scope(user: Any) -> None:
    """Drop the cached scope after roles change within one request (tests, admin)."""
    if hasattr(user, "_tether_scope"):
        del user._tether_scope
