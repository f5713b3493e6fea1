"""The policy generation: bump it after any write that changes what Cedar should decide.

Registry services call ``apps.common.generation.bump_on_commit("policy")`` (the registry may
not import this app); the policy services call :func:`bump_policy_generation`.
"""

from __future__ import annotations

from apps.common import generation

from .constants import GENERATION


def bump_policy_generation() -> None:
    """Every process rebuilds its policy snapshot once the current transaction commits."""
    generation.bump_on_commit(GENERATION)


def policy_generation() -> int | None:
    """The shared generation (None when Redis is unset or down)."""
    return generation.read(GENERATION)
