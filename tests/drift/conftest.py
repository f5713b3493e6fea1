"""A claims agent that runs in prod with one read tool, and fresh runtime caches."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from apps.registry import services as registry
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.models import AgentCredential

from ..caches import runtime_caches_cleared
from ..factories import make_tool


@dataclass
class Claims:
    agent: Agent
    credential: AgentCredential
    secret: str


fresh_runtime_caches = pytest.fixture(autouse=True)(runtime_caches_cleared)


@pytest.fixture
def claims(org) -> Claims:
    lookup = make_tool(
        "policy-lookup",
        actions=["read"],
        input_schema={"type": "object", "properties": {"id": {"type": "string"}}},
    )
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims approver", "slug": "claims-approver", "mission": "Approve claims.",
            "department": org.claims, "environments": ["dev", "staging", "canary", "prod"],
            "status": "active", "knowledge_base_version": "kb-2026-01",
        },
    )  # fmt: skip
    registry.grant_set(
        actor=org.owner, agent=agent, tool=lookup, actions=["read"], environments=["prod"]
    )
    credential, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="prod worker"
    )
    return Claims(agent, credential, issued.plaintext)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
