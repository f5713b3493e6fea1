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


class Threads:
    """Threads that live as long as the process and keep their database connection between
    calls (closed, and so replaced, only after a database error). ``size`` is read when the
    threads are first needed, not at import."""

    def __init__(self, name: str, size: Callable[[], int]) -> None:
        self.name = name
        self.size = size
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.size(), thread_name_prefix=self.name
                    )
        return self._executor

    async def run(self, fn: Callable[..., T], *args: Any, own_context: bool = False) -> T:
        """``fn(*args)`` in one of the threads. With the caller's context variables, unless
        ``own_context``: then what Django keeps per context (the cache client, and so its
        Redis connection) lives as long as the thread, as its database connection does.

        Plain ``run_in_executor`` rather than asgiref's ``sync_to_async``: nothing in ``fn``
        calls back into the event loop, and the hop costs a fraction of what asgiref's does.
        """
        loop = asyncio.get_running_loop()
        if own_context:
            return await loop.run_in_executor(self.pool(), _unit, fn, *args)
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.pool(), context.run, _unit, fn, *args)

    def shut_down(self) -> None:
        """Close every thread's connection and stop the threads (tests, shutdown)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        count = executor._max_workers
        everyone = threading.Barrier(count)

        def close() -> None:
            everyone.wait(timeout=10)  # one task per thread: none may take two
            connection.close()

        for future in [executor.submit(close) for _ in range(count)]:
            future.result()
        executor.shutdown(wait=True)


def _unit(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    finally:
        if connection.errors_occurred:
            connection.close_if_unusable_or_obsolete()


HOT_PATH = Threads("tether-hot", lambda: settings.HOT_PATH_THREADS)


async def run_hot(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a hot-path thread (the caller's context variables go with it)."""
    return await HOT_PATH.run(fn, *args)


def shut_down() -> None:
    HOT_PATH.shut_down()
