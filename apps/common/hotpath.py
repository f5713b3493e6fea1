"""A few long-lived threads for the agents' hot path.

The decision endpoint is asked before every step of every agent. Served by Django's ASGI
handler, each request would get a thread made for it (and a database connection lent by the
pool around it); that bookkeeping costs as much as the decision. ``run_hot(fn, ...)`` runs
``fn`` in one of ``HOT_PATH_THREADS`` threads that live as long as the process and keep their
database connection between calls (closed, and so replaced, only after a database error).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection

T = TypeVar("T")

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


def _unit(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    finally:
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


async def run_hot(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a hot-path thread (the caller's context variables go with it).

    Plain ``run_in_executor`` rather than asgiref's ``sync_to_async``: nothing in ``fn`` calls
    back into the event loop, and the hop costs a fraction of what asgiref's does.
    """
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), context.run, _unit, fn, *args)


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
