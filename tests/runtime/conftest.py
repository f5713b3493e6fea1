"""A runnable agent: active, granted tools, bound memory, a credential in prod."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from apps.registry import services as registry
from apps.registry.constants import MemoryClass
from apps.registry.models import Agent, MemoryStore, Tool
from apps.runtime import services
from apps.runtime.models import AgentCredential, Run

from ..caches import runtime_caches_cleared
from ..factories import make_tool


@dataclass
class Setup:
    agent: Agent
    lookup: Tool
    refund: Tool
    credential: AgentCredential
    secret: str


fresh_runtime_caches = pytest.fixture(autouse=True)(runtime_caches_cleared)


@pytest.fixture
def setup(org) -> Setup:
    lookup = make_tool(
        "crm-lookup",
        actions=["read"],
        input_schema={
            "type": "object",
            "properties": {"customer_id": {"type": "string"}},
            "required": ["customer_id"],
            "additionalProperties": False,
        },
    )
    refund = make_tool(
        "payment-refund",
        actions=["create"],
        risk_class="medium",
        input_schema={
            "type": "object",
            "properties": {"amount": {"type": "number"}, "order": {"type": "string"}},
            "required": ["amount"],
        },
    )
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims triage",
            "slug": "claims-triage",
            "mission": "Triage.",
            "department": org.claims,
            "environments": ["dev", "prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    registry.grant_set(
        actor=org.owner, agent=agent, tool=lookup, actions=["read"], environments=["prod"]
    )
    registry.grant_set(
        actor=org.owner,
        agent=agent,
        tool=refund,
        actions=["create"],
        environments=["prod"],
        constraints={"max_amount": 500},
    )
    for slug, cls in (("case-notes", MemoryClass.DURABLE), ("hr-records", MemoryClass.FORBIDDEN)):
        store = MemoryStore.objects.create(name=slug, slug=slug, store_class=cls)
        registry.memory_binding_set(actor=org.owner, agent=agent, store=store, access="read")
    credential, issued = services.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="prod worker"
    )
    return Setup(agent, lookup, refund, credential, issued.plaintext)


def start_run(setup: Setup, **kwargs) -> tuple[Run, str]:
    return services.run_start(credential=setup.credential, task="Triage claim 42", **kwargs)
