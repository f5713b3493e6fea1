"""A few long-lived threads for the agents' hot path under ASGI.

Under ASGI, Django runs every sync view in a thread made for that request, and the request's
database connection is taken from the pool and handed back around it. For the decision
endpoint, asked before every step of every agent, that bookkeeping costs as much as the
decision. ``hot_path(view)`` makes the view async and runs its sync body in one of
``HOT_PATH_THREADS`` threads that live as long as the process and keep their connection
between requests (closed, and so replaced, only after a database error).

Only an ASGI request goes there: under WSGI (and Django's test client) the body runs in the
calling thread, exactly as a plain sync view would.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponse

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(
                    max_workers=settings.HOT_PATH_THREADS, thread_name_prefix="tether-hot"
                )
    return _executor


def shut_down() -> None:
    """Close every hot-path thread's connection and stop the threads (tests, shutdown)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is None:
        return
    count = settings.HOT_PATH_THREADS
    everyone = threading.Barrier(count)

    def close() -> None:
        everyone.wait(timeout=10)  # one task per thread: none may take two
        connection.close()

    for future in [executor.submit(close) for _ in range(count)]:
        future.result()
    executor.shutdown(wait=True)


def _in_hot_thread(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def run(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            response = view(request, *args, **kwargs)
            # A streaming or lazily rendered response must be finished in this thread.
            render = getattr(response, "render", None)
            if callable(render):
                render()
            return response
        finally:
            if connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()

    return run


def hot_path(view: Callable[..., HttpResponse]) -> Callable[..., Any]:
    """``view`` as an async view whose body runs in a long-lived hot-path thread.

    ``functools.wraps`` keeps what DRF and drf-spectacular read off the view (``cls``,
    ``initkwargs``, ``csrf_exempt``), so the endpoint is documented as before.
    """
    body = _in_hot_thread(view)

    @functools.wraps(view)
    async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if isinstance(request, ASGIRequest):
            call = sync_to_async(body, thread_sensitive=False, executor=_pool())
        else:  # called from a sync thread: run there, on that thread's connection
            call = sync_to_async(view, thread_sensitive=True)
        return await call(request, *args, **kwargs)

    return async_view
