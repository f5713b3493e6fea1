"""``kind: Budget`` in manifests: autonomy budgets as YAML, applied through the budget services.

```yaml
apiVersion: tether/v1
kind: Budget
metadata: {slug: claims-triage-tokens, name: Tokens per run}
spec:
  agent: claims-triage          # or department: claims (scope department_month),
                                # or team: claims-ops (scope team_month)
  kind: tokens
  scope: run
  limit: 50000
  edge: degrade
  degrade_to_model: gpt-4.1-mini
  enabled: true
```

Registered with the registry's manifests from ``RuntimeConfig.ready`` (the registry may not
import this app). Budgets are applied after agents, so a file may define an agent and its
budgets together.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError

from apps.accounts.models import Department, Team, User, slug_validator
from apps.common.errors import ApplicationError
from apps.registry.manifests import (
    KIND_AGENT,
    REQUIRED,
    ManifestContext,
    ManifestEntry,
    ManifestKind,
    register_kind,
)
from apps.registry.models import Agent

from . import services
from .constants import BUDGET_NAME_MAX, BUDGET_SLUG_MAX, BudgetEdge
from .models import Budget

KIND_BUDGET = "Budget"

BUDGET_SPEC: dict[str, tuple[str, Any]] = {
    "agent": ("text_or_null", None),
    "department": ("text_or_null", None),
    "team": ("text_or_null", None),
    "kind": ("text", REQUIRED),
    "scope": ("text", REQUIRED),
    "limit": ("number", REQUIRED),
    "edge": ("text", BudgetEdge.STOP.value),
    "degrade_to_model": ("text", ""),
    "enabled": ("bool", True),
}


def _number(limit: Decimal) -> int | float:
    """The limit as YAML writes it: a whole number, or a decimal (at most four places, which
    a float holds exactly enough to read back the same)."""
    normal = limit.normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def budget_spec(budget: Budget) -> dict[str, Any]:
    """A budget in manifest form; the keys are BUDGET_SPEC's, in its order."""
    return {
        "agent": budget.agent_slug,
        "department": budget.department_slug,
        "team": budget.team_slug,
        "kind": budget.kind,
        "scope": budget.scope,
        "limit": _number(budget.limit),
        "edge": budget.edge,
        "degrade_to_model": budget.degrade_to_model,
        "enabled": budget.enabled,
    }


def _current(slug: str) -> tuple[Budget | None, dict[str, Any] | None]:
    budget = Budget.objects.select_related("agent", "department", "team").filter(slug=slug).first()
    return budget, budget_spec(budget) if budget else None


def _hidden(actor: User, slug: str) -> bool:
    return (
        Budget.objects.filter(slug=slug).exists()
        and not Budget.objects.for_user(actor).filter(slug=slug).exists()
    )


def _check(entry: ManifestEntry, context: ManifestContext) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    spec = entry.spec
    try:
        slug_validator(entry.slug)
    except ValidationError as exc:
        problems.append(("metadata.slug", exc.messages[0]))
    if len(entry.slug) > BUDGET_SLUG_MAX:
        problems.append(("metadata.slug", f"At most {BUDGET_SLUG_MAX} characters."))
    if entry.name is not None and not (0 < len(entry.name.strip()) <= BUDGET_NAME_MAX):
        problems.append(("metadata.name", f"Give a name of 1-{BUDGET_NAME_MAX} characters."))
    agent_slug, department_slug = spec.get("agent"), spec.get("department")
    in_file = context.file_slugs.get(KIND_AGENT, set())
    if (
        isinstance(agent_slug, str)
        and agent_slug not in in_file
        and not Agent.objects.for_user(context.actor).filter(slug=agent_slug).exists()
    ):
        problems.append(
            ("spec.agent", f"No agent {agent_slug!r}: define it in this file or register it.")
        )
    if isinstance(department_slug, str) and not (
        Department.objects.filter(slug=department_slug).exists()
    ):
        known = ", ".join(Department.objects.order_by("slug").values_list("slug", flat=True))
        problems.append(
            ("spec.department", f"No department {department_slug!r}. Known: {known or 'none'}.")
        )
    team_slug = spec.get("team")
    if isinstance(team_slug, str) and not Team.objects.filter(slug=team_slug).exists():
        problems.append(("spec.team", f"No team {team_slug!r}: teams are set up in the admin."))
    shape = services.budget_problems(
        kind=spec.get("kind"), scope=spec.get("scope"), has_agent=agent_slug is not None,
        has_department=department_slug is not None, has_team=team_slug is not None,
        limit=spec.get("limit"), edge=spec.get("edge"),
        degrade_to_model=spec.get("degrade_to_model"),
    )  # fmt: skip
    for field, messages in shape.items():
        if field not in ("agent", "department", "team") and spec.get(field) is None:
            continue  # missing or of the wrong type: already reported
        problems.extend((f"spec.{field}", message) for message in messages)
    return problems


def _apply(actor: User, entry: ManifestEntry, instance: Any) -> None:
    spec = entry.spec
    limit = Decimal(str(spec["limit"]))
    if isinstance(instance, Budget):
        services.budget_update(
            actor=actor, budget=instance,
            data={
                "name": entry.name, "limit": limit, "edge": spec["edge"],
                "degrade_to_model": spec["degrade_to_model"], "enabled": spec["enabled"],
                "kind": spec["kind"], "scope": spec["scope"], "agent": spec["agent"],
                "department": spec["department"], "team": spec["team"],
            },
        )  # fmt: skip
        return
    agent = Agent.objects.filter(slug=spec["agent"]).first() if spec["agent"] else None
    department = (
        Department.objects.filter(slug=spec["department"]).first() if spec["department"] else None
    )
    team = (
        Team.objects.select_related("department").filter(slug=spec["team"]).first()
        if spec["team"]
        else None
    )
    if spec["agent"] and agent is None:
        raise ApplicationError(f"No agent {spec['agent']!r}.")
    services.budget_create(
        actor=actor, slug=entry.slug, name=entry.name or "", kind=spec["kind"],
        scope=spec["scope"], limit=limit, agent=agent, department=department, team=team,
        edge=spec["edge"], degrade_to_model=spec["degrade_to_model"], enabled=spec["enabled"],
    )  # fmt: skip


def _export(user: Any) -> list[tuple[str, str, dict[str, Any]]]:
    budgets = Budget.objects.for_user(user).select_related("agent", "department", "team")
    return [(b.slug, b.name, budget_spec(b)) for b in budgets.order_by("slug")]


def register() -> None:
    register_kind(
        ManifestKind(
            kind=KIND_BUDGET, spec=BUDGET_SPEC, current=_current, hidden=_hidden, check=_check,
            apply=_apply, export=_export, api_view="runtime-people-api:budget-detail",
        )
    )  # fmt: skip
