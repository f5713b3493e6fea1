from typing import Any

from django.http import HttpRequest

from .permissions import scope_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    """What the navigation shows depends on the roles the user holds."""
    scope = scope_of(getattr(request, "user", None))
    roles = scope.roles()
    return {"nav_roles": roles, "nav_is_admin": scope.is_admin, "nav_has_role": scope.has_any_role}
