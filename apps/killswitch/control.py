"""Pushing a kill to the SDKs connected on the agents' control socket (to be built)."""

from __future__ import annotations


def push_killed(kill_id: int) -> None:
    """Tell every connected SDK of a run this switch killed to abort now."""
