"""The runtime's per-process caches and its Redis counters, emptied around a test; packages
whose tests decide (runtime, drift) use it as an autouse fixture."""

from __future__ import annotations

from collections.abc import Iterator


def runtime_caches_cleared() -> Iterator[None]:
    import redis
    from django.conf import settings

    from apps.runtime.decisions import forget_caches

    forget_caches()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield
    forget_caches()
