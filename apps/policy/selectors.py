"""Reads of admin policies. Policies are organisation-wide rules, read by admins and auditors
and written by admins; anyone else gets 403 for lists and 404 for a policy."""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from apps.accounts.constants import Role
from apps.accounts.permissions import scope_of
from apps.common.errors import NotPermitted
from apps.registry.models import Agent, MemoryStore, Tool

from .constants import Origin, ResourceType
from .evaluation import current_snapshot
from .models import Policy, PolicyVersion


def _detailed(policies: QuerySet[Policy]) -> QuerySet[Policy]:
    """With their people, and ``current_version``: the newest version's number."""
    return policies.select_related("created_by", "updated_by").annotate(
        current_version=Max("versions__number")
    )


def can_read_policies(user: Any) -> bool:
    scope = scope_of(user)
    return scope.is_admin or scope.has_role(Role.AUDITOR)


def can_write_policies(user: Any) -> bool:
    return scope_of(user).is_admin


def policy_list(*, user: Any, q: str = "", enabled: bool | None = None) -> QuerySet[Policy]:
    if not can_read_policies(user):
        raise NotPermitted("Policies are open to admins and auditors.")
    policies = _detailed(Policy.objects.order_by("name"))
    if q:
        policies = policies.filter(
            Q(name__icontains=q) | Q(slug__icontains=q) | Q(description__icontains=q)
        )
    if enabled is not None:
        policies = policies.filter(enabled=enabled)
    return policies


def policy_get(*, user: Any, slug: str) -> Policy:
    """One policy; 404 when it does not exist or the user may not read policies."""
    if not can_read_policies(user):
        raise Http404("No such policy.")
    return get_object_or_404(_detailed(Policy.objects.all()), slug=slug)


def policy_versions(policy: Policy) -> QuerySet[PolicyVersion]:
    return policy.versions.select_related("author").order_by("-number")


def policy_version_get(*, policy: Policy, number: int) -> PolicyVersion:
    return get_object_or_404(policy.versions.all(), number=number)


@dataclass(frozen=True)
class PolicyDiff:
    older: PolicyVersion
    newer: PolicyVersion
    lines: list[str]  # a unified diff

    @property
    def is_empty(self) -> bool:
        return not self.lines


def policy_diff(*, older: PolicyVersion, newer: PolicyVersion) -> PolicyDiff:
    lines = list(
        difflib.unified_diff(
            older.text.splitlines(),
            newer.text.splitlines(),
            fromfile=f"v{older.number}",
            tofile=f"v{newer.number}",
            lineterm="",
        )
    )
    return PolicyDiff(older=older, newer=newer, lines=lines)


@dataclass(frozen=True)
class EffectiveSummary:
    """How many statements of each origin are in force."""

    baseline: int
    admin: int
    registry: int
    disabled_policies: int
    errors: list[str]


def effective_summary(*, user: Any) -> EffectiveSummary:
    if not can_read_policies(user):
        raise NotPermitted("Policies are open to admins and auditors.")
    snap = current_snapshot()
    origins = Counter(s.origin for s in snap.statements.values())
    registry = sum(len(r.grants) + len(r.memory) + len(r.delegates_to) for r in snap.rules.values())
    return EffectiveSummary(
        baseline=origins[Origin.BASELINE],
        admin=origins[Origin.ADMIN],
        registry=registry,
        disabled_policies=Policy.objects.filter(enabled=False).count(),
        errors=list(snap.errors),
    )


def simulation_agents(*, user: Any) -> QuerySet[Agent]:
    """The agents a person may try requests for: those they can see in the registry."""
    return Agent.objects.for_user(user).order_by("name")


def simulation_agent_get(*, user: Any, slug: str) -> Agent | None:
    return simulation_agents(user=user).filter(slug=slug).first()


def resource_suggestions(*, user: Any, resource_type: str) -> list[tuple[str, str]]:
    """(id, label) pairs for the try-it panel's resource field."""
    if resource_type == ResourceType.TOOL:
        return list(Tool.objects.for_user(user).order_by("name").values_list("slug", "name"))
    if resource_type == ResourceType.MEMORY_STORE:
        return list(MemoryStore.objects.for_user(user).order_by("name").values_list("slug", "name"))
    if resource_type == ResourceType.AGENT:
        return list(simulation_agents(user=user).values_list("slug", "name"))
    models = (
        simulation_agents(user=user)
        .exclude(default_model="")
        .order_by("default_model")
        .values_list("default_model", flat=True)
        .distinct()
    )
    return [(m, m) for m in models]
