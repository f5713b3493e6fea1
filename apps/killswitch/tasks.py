"""Celery work after a kill: the owners' notices and the agents' safe-state actions (to be
built)."""

from __future__ import annotations


def queue_after_kill(kill_id: int) -> None:
    """Queue the notices and safe-state actions of a committed engagement."""
