"""Websocket routes. Live run views, the approval inbox and agent control pushes land here."""

from typing import Any

websocket_urlpatterns: list[Any] = []
