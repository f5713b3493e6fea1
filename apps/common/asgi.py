"""ASGI routing that sends a few exact paths to their own apps and the rest to Django."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

ASGIApp = Any  # (scope, receive, send) -> awaitable


def exact_paths(routes: Mapping[str, ASGIApp], default: ASGIApp) -> ASGIApp:
    """An ASGI app: ``routes[scope["path"]]`` when the path is one of them, else ``default``."""

    async def route(scope: Any, receive: Any, send: Any) -> None:
        await routes.get(scope.get("path", ""), default)(scope, receive, send)

    return route


def handshake_authorization(scope: Mapping[str, Any]) -> str:
    """A websocket handshake's Authorization header, else ``Bearer <?token=...>`` for clients
    that cannot set headers on a websocket (browsers, some SDKs)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            return bytes(value).decode("latin-1")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = query.get("token", [""])[0]
    return f"Bearer {token}" if token else ""
