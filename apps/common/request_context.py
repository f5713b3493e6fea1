"""The request id of the work in progress, carried by a ContextVar.

Web requests, Celery tasks and Channels consumers set it so logs, traces and audit line up.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

_request_id: ContextVar[str] = ContextVar("tether_request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def get_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> None:
    _request_id.set(value)
