"""ASGI routing that sends a few exact paths to their own apps and the rest to Django."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ASGIApp = Any  # (scope, receive, send) -> awaitable


def exact_paths(routes: Mapping[str, ASGIApp], default: ASGIApp) -> ASGIApp:
    """An ASGI app: ``routes[scope["path"]]`` when the path is one of them, else ``default``."""

    async def route(scope: Any, receive: Any, send: Any) -> None:
        await routes.get(scope.get("path", ""), default)(scope, receive, send)

    return route
