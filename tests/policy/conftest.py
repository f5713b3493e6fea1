"""A small registry to decide over: two agents, three tools, two memory stores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.policy.evaluation import reset_snapshot
from apps.registry.constants import AgentStatus, MemoryAccess, MemoryClass, RiskClass
from apps.registry.models import Agent, MemoryBinding, MemoryStore, Tool, ToolGrant

from ..factories import make_agent, make_tool


@pytest.fixture(autouse=True)
def fresh_policy_snapshot() -> Iterator[None]:
    """Each test starts from an empty cache: snapshots are per process, tests are not."""
    reset_snapshot()
    yield
    reset_snapshot()


@dataclass
class Registry:
    triage: Agent  # active; crm-lookup (read, update in prod), refund-issue (issue in prod)
    scout: Agent  # active; no grants
    crm: Tool
    refund: Tool
    shell: Tool  # granted to nobody
    notes: MemoryStore  # durable, triage reads and writes
    archive: MemoryStore  # forbidden, triage reads


@pytest.fixture
def registry(org: Any) -> Registry:
    triage = make_agent(org.claims, org.owner, "claims-triage", autonomy_level=2)
    scout = make_agent(org.claims, org.owner, "fraud-scout")
    crm = make_tool("crm-lookup", actions=["read", "update", "close"])
    refund = make_tool("refund-issue", actions=["issue"], risk_class=RiskClass.HIGH)
    shell = make_tool("shell", actions=["run"], risk_class=RiskClass.CRITICAL)
    ToolGrant.objects.create(
        agent=triage, tool=crm, actions=["read", "update"], environments=["prod"]
    )
    ToolGrant.objects.create(agent=triage, tool=refund, actions=["issue"], environments=["prod"])
    notes = MemoryStore.objects.create(
        slug="case-notes", name="Case notes", store_class=MemoryClass.DURABLE
    )
    archive = MemoryStore.objects.create(
        slug="legal-archive", name="Legal archive", store_class=MemoryClass.FORBIDDEN
    )
    MemoryBinding.objects.create(agent=triage, store=notes, access=MemoryAccess.READ_WRITE)
    MemoryBinding.objects.create(agent=triage, store=archive, access=MemoryAccess.READ)
    assert triage.status == AgentStatus.ACTIVE
    return Registry(triage, scout, crm, refund, shell, notes, archive)
