"""Generation counters: how one process tells every other that something they cache changed.

``bump("policy")`` after a write; a cache remembers the generation it was built at and
rebuilds when ``read("policy")`` answers something else. The counter lives in Redis
(``tether:<name>:generation``) so every web process and worker sees it; each process also
keeps its own count of the bumps it made, so the process that wrote sees its write at once
even when Redis is unset or down.

A counter is only a hint that makes caches fresh sooner. Readers must not depend on every
writer remembering to bump: the policy cache, for one, also compares a fingerprint of the
tables it reads (``docs/policy.md``). So Redis being down is logged, never raised.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

# Small: a check that waits on a sick Redis would stall every caller behind it.
REDIS_TIMEOUT_SECONDS = 0.25

WARN_EVERY_SECONDS = 30.0

_local: dict[str, int] = {}
_lock = threading.Lock()
_clients: dict[str, Any] = {}
_warned_at: dict[str, float] = {}


def _warn(what: str, name: str, exc: Exception) -> None:
    """Say that Redis is unreachable, once in a while rather than on every call."""
    now = time.monotonic()
    if now - _warned_at.get(what, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
        _warned_at[what] = now
        logger.warning("could not %s generation %s in Redis: %s", what, name, exc)


def key(name: str) -> str:
    return f"tether:{name}:generation"


def _redis() -> Any | None:
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        import redis

        client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        _clients[url] = client
    return client


def bump(name: str) -> None:
    """Mark ``name`` changed now: in this process at once, in Redis for the others."""
    with _lock:
        _local[name] = _local.get(name, 0) + 1
    client = _redis()
    if client is None:
        return
    try:
        client.incr(key(name))
    except Exception as exc:  # Redis is a hint here; the fingerprint still catches the change
        _warn("bump", name, exc)


def bump_on_commit(name: str) -> None:
    """Bump once the current transaction commits (at once outside a transaction).

    Bumping before the commit would let a reader rebuild from the old rows and keep them
    under the new generation.
    """
    transaction.on_commit(lambda: bump(name))


def read(name: str) -> int | None:
    """The shared generation of ``name``; 0 before any bump; None when Redis is unset or down."""
    client = _redis()
    if client is None:
        return None
    try:
        value = client.get(key(name))
    except Exception as exc:
        _warn("read", name, exc)
        return None
    return int(value) if value is not None else 0


def local(name: str) -> int:
    """How many times this process bumped ``name``: free to read on every call."""
    return _local.get(name, 0)


class CacheToken:
    """What a per-process cache of ``name`` must have been built under to still be current:
    (bumps made in this process, the shared generation read at most every ``refresh``
    seconds). A cache that remembers a different token rebuilds. With Redis unset or down the
    shared part reads as None and the cache's own time limit is what remains."""

    def __init__(self, name: str, refresh: float) -> None:
        self.name = name
        self.refresh = refresh
        self._lock = threading.Lock()
        self._shared: int | None = None
        self._read_at = -refresh

    def __call__(self) -> tuple[int, int | None]:
        now = time.monotonic()
        if now - self._read_at >= self.refresh:
            with self._lock:
                if now - self._read_at >= self.refresh:
                    self._shared = read(self.name)
                    self._read_at = now
        return local(self.name), self._shared

    def forget(self) -> None:
        """Read the shared generation again on the next call (tests)."""
        self._read_at = -self.refresh


T = TypeVar("T")


class CachedTable(Generic[T]):
    """A small table a process keeps (gates, frozen stores, prices): built by ``build`` from
    the database, built again when generation ``name`` moves (see :class:`CacheToken`) and, with
    ``max_age``, at least that often whatever Redis says."""

    def __init__(
        self, name: str, build: Callable[[], T], *, refresh: float, max_age: float | None = None
    ) -> None:
        self._token = CacheToken(name, refresh)
        self._build = build
        self._max_age = max_age
        self._lock = threading.Lock()
        self._held: tuple[tuple[int, int | None], float, T] | None = None

    def get(self) -> T:
        held, token = self._held, self._token()
        if (
            held is not None
            and held[0] == token
            and (self._max_age is None or time.monotonic() - held[1] < self._max_age)
        ):
            return held[2]
        with self._lock:
            value = self._build()
            self._held = (token, time.monotonic(), value)
            return value

    def forget(self) -> None:
        """Build the table again on the next call (tests, and the writing process)."""
        self._held = None
        self._token.forget()
