"""The budget generation: every budget write bumps it, so per-process budget caches follow.

The decision service caches each agent's budgets (``decisions._budgets_for``). A write in this
process is seen on the very next decision (:func:`apps.common.generation.local` is free to
read); a write in another process is seen within ``BUDGET_REFRESH_SECONDS``, the longest this
module goes without reading the shared counter in Redis. With Redis unset or down the shared
part reads as None and the cache's own time limit is what remains.
"""

from __future__ import annotations

import threading
import time

from apps.common import generation

from .constants import BUDGET_GENERATION, BUDGET_REFRESH_SECONDS

_lock = threading.Lock()
_shared: int | None = None
_read_at = -BUDGET_REFRESH_SECONDS


def bump_budget_generation() -> None:
    """Every process drops its cached budgets once the current transaction commits."""
    generation.bump_on_commit(BUDGET_GENERATION)


def budget_cache_token() -> tuple[int, int | None]:
    """What a budget cache must have been built under to still be current.

    (bumps made in this process, the shared generation read at most every
    ``BUDGET_REFRESH_SECONDS``). A cache that remembers a different token rebuilds.
    """
    global _shared, _read_at
    now = time.monotonic()
    if now - _read_at >= BUDGET_REFRESH_SECONDS:
        with _lock:
            if now - _read_at >= BUDGET_REFRESH_SECONDS:
                _shared = generation.read(BUDGET_GENERATION)
                _read_at = now
    return generation.local(BUDGET_GENERATION), _shared


def forget_budget_token() -> None:
    """Read the shared generation again on the next call (tests)."""
    global _read_at
    _read_at = -BUDGET_REFRESH_SECONDS
