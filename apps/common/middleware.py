"""Gives every request an id (``X-Request-ID``), honouring a sane one sent by a proxy."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from .request_context import new_request_id, set_request_id

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def request_id_from(incoming: str) -> str:
    """The proxy's request id when it is sane, else a new one."""
    return incoming if _SAFE_ID.match(incoming) else new_request_id()


class RequestIdMiddleware:
    """Sync and async alike: a sync-only middleware would make every ASGI request hop threads."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        request_id = self._start(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        request_id = self._start(request)
        response: HttpResponse = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    @staticmethod
    def _start(request: HttpRequest) -> str:
        request_id = request_id_from(request.headers.get("X-Request-ID", ""))
        set_request_id(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id
