"""Small factories: each makes one valid object, with keyword overrides."""

from __future__ import annotations

import itertools
from typing import Any

from apps.accounts.models import Department, Team, User
from apps.accounts.services import role_assign
from apps.registry.constants import AgentStatus, Environment, RiskClass
from apps.registry.models import Agent, Tool

_seq = itertools.count(1)

PASSWORD = "correct-horse-battery-staple"


def make_department(slug: str = "", **extra: Any) -> Department:
    n = next(_seq)
    slug = slug or f"dept-{n}"
    return Department.objects.create(slug=slug, name=extra.pop("name", slug.title()), **extra)


def make_team(department: Department, slug: str = "", **extra: Any) -> Team:
    n = next(_seq)
    slug = slug or f"team-{n}"
    return Team.objects.create(
        department=department, slug=slug, name=extra.pop("name", slug.title())
    )


def make_user(username: str, *roles: tuple[str, Department | Team | None], **extra: Any) -> User:
    """``make_user("alice", ("owner", claims))`` — roles as (role, scope) pairs; None = org-wide."""
    user = User.objects.create_user(username=username, password=PASSWORD, **extra)
    for role, scope in roles:
        role_assign(
            actor=None,
            user=user,
            role=role,
            department=scope if isinstance(scope, Department) else None,
            team=scope if isinstance(scope, Team) else None,
        )
    return user


def make_tool(slug: str = "", **extra: Any) -> Tool:
    n = next(_seq)
    slug = slug or f"tool-{n}"
    fields: dict[str, Any] = {
        "name": slug.replace("-", " ").title(),
        "description": "Looks things up.",
        "risk_class": RiskClass.LOW,
        "actions": ["read", "update"],
        "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        "output_schema": {"type": "object"},
    }
    fields.update(extra)
    return Tool.objects.create(slug=slug, **fields)


def make_agent(department: Department, owner: User | None, slug: str = "", **extra: Any) -> Agent:
    n = next(_seq)
    slug = slug or f"agent-{n}"
    fields: dict[str, Any] = {
        "name": slug.replace("-", " ").title(),
        "mission": "Triage incoming claims.",
        "status": AgentStatus.ACTIVE,
        "environments": [Environment.DEV, Environment.PROD],
    }
    fields.update(extra)
    return Agent.objects.create(slug=slug, department=department, owner=owner, **fields)
