"""Memory stores frozen by an engaged kill switch, as the decision service asks about them.

Engaging a switch freezes the memory stores its agents could write (``KillSwitch.
frozen_stores``): while it is engaged no run of any agent writes them, so what the stopped
agents remembered stays as it was for the investigation, and nothing they left half-done is
built on. Reads go on as policy says, or are refused too when the switch says so.

The decision service asks on every memory step, so the answer comes from a per-process table:
rebuilt when a switch is engaged or released (a generation bump, read from Redis at most every
``FREEZE_REFRESH_SECONDS``, so every web process honours a new freeze within 100 ms) and at
least every ``FREEZE_CACHE_SECONDS`` whatever Redis says.
"""

from __future__ import annotations

from apps.common import generation

from .constants import FREEZE_CACHE_SECONDS, FREEZE_GENERATION, FREEZE_REFRESH_SECONDS, MemoryReads


def _build() -> dict[str, str]:
    """Frozen store slug -> MemoryReads, from the engaged switches (deny wins over allow)."""
    from .models import KillSwitch

    reads: dict[str, str] = {}
    engaged = KillSwitch.objects.filter(released_at__isnull=True).exclude(frozen_stores=[])
    for stores, mode in engaged.values_list("frozen_stores", "memory_reads"):
        for slug in stores:
            if reads.get(slug) != MemoryReads.DENY:
                reads[slug] = mode
    return reads


_frozen = generation.CachedTable(
    FREEZE_GENERATION, _build, refresh=FREEZE_REFRESH_SECONDS, max_age=FREEZE_CACHE_SECONDS
)


def bump_freeze() -> None:
    """Every process reads the frozen stores afresh once the current transaction commits."""
    generation.bump_on_commit(FREEZE_GENERATION)


def forget_freeze() -> None:
    _frozen.forget()


def frozen_reads(store_slug: str) -> str | None:
    """None when no engaged switch freezes the store; else whether reads still go on."""
    return _frozen.get().get(store_slug)
