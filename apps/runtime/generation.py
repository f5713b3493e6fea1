"""The budget generation: every budget write bumps it, so per-process budget caches follow.

The decision service caches each agent's budgets (``decisions._budgets_for``). A write in this
process is seen on the very next decision (:func:`apps.common.generation.local` is free to
read); a write in another process is seen within ``BUDGET_REFRESH_SECONDS``, the longest this
module goes without reading the shared counter in Redis. With Redis unset or down the shared
part reads as None and the cache's own time limit is what remains.
"""

from __future__ import annotations

from apps.common import generation

from .constants import BUDGET_GENERATION, BUDGET_REFRESH_SECONDS

budget_cache_token = generation.CacheToken(BUDGET_GENERATION, BUDGET_REFRESH_SECONDS)


def bump_budget_generation() -> None:
    """Every process drops its cached budgets once the current transaction commits."""
    generation.bump_on_commit(BUDGET_GENERATION)


def forget_budget_token() -> None:
    """Read the shared generation again on the next call (tests)."""
    budget_cache_token.forget()
