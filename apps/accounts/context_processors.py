from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .permissions import scope_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    """What the navigation shows depends on the roles the user holds."""
    user = getattr(request, "user", None)
    scope = scope_of(user)
    roles = scope.roles()
    return {
        "nav_roles": roles,
        "nav_is_admin": scope.is_admin,
        "nav_has_role": scope.has_any_role,
        # Counted only when a page shows it.
        "nav_pending_approvals": SimpleLazyObject(lambda: _pending_approvals(user))
        if scope.has_any_role
        else 0,
    }


def _pending_approvals(user: Any) -> int:
    from apps.approvals.selectors import inbox_counts, may_approve_anything

    return inbox_counts(user=user)["all"] if may_approve_anything(user) else 0
