"""The SDK is its own package in sdk/ (users `pip install ./sdk`); the tests import it from the
checkout, so the project's test install needs nothing more.

The end-to-end tests run the SDK over real HTTP against pytest-django's live server: an
active agent with one granted tool, two budgets and a credential in prod.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SDK = Path(__file__).resolve().parents[2] / "sdk"
if str(SDK) not in sys.path:
    sys.path.insert(0, str(SDK))


@dataclass
class LiveAgent:
    url: str
    key: str
    agent: Any
    credential: Any
    owner: Any


@pytest.fixture(scope="session")
def _restore_default_data(django_db_setup: Any, django_db_blocker: Any) -> Iterator[None]:
    """Live-server tests flush the database when they end; put the migrations' data back once
    at the end too, so that a reused test database (--reuse-db) starts complete."""
    yield
    from apps.registry.constants import DEFAULT_DATA_CLASSES
    from apps.registry.models import DataClass

    with django_db_blocker.unblock():
        for rank, (slug, name, description) in enumerate(DEFAULT_DATA_CLASSES):
            DataClass.objects.get_or_create(
                slug=slug, defaults={"name": name, "description": description, "sensitivity": rank}
            )


@pytest.fixture
def fresh_runtime(_restore_default_data: None) -> Iterator[None]:
    """Budget counters and per-process caches from an earlier test must not leak in."""
    import redis
    from django.conf import settings

    from apps.runtime.decisions import forget_caches

    def forget() -> None:
        forget_caches()
        try:
            from apps.policy.evaluation import reset_snapshot
        except ImportError:  # pragma: no cover - the policy app not installed yet
            return
        reset_snapshot()

    forget()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield
    forget()


@pytest.fixture
def live_agent(org: Any, live_server: Any, fresh_runtime: None) -> LiveAgent:
    from apps.registry import services as registry
    from apps.registry.constants import MemoryClass
    from apps.registry.models import MemoryStore
    from apps.runtime import services as runtime
    from apps.runtime.constants import BudgetKind, BudgetScope
    from apps.runtime.models import Budget

    from ..factories import make_tool

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
    make_tool(
        "payment-refund",
        actions=["create"],
        risk_class="medium",
        input_schema={
            "type": "object",
            "properties": {"order": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["order", "amount"],
        },
    )
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims triage",
            "slug": "claims-triage",
            "mission": "Triage incoming claims.",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    registry.grant_set(
        actor=org.owner, agent=agent, tool=lookup, actions=["read"], environments=["prod"]
    )
    notes = MemoryStore.objects.create(
        name="Case notes", slug="case-notes", store_class=MemoryClass.DURABLE
    )
    registry.memory_binding_set(actor=org.owner, agent=agent, store=notes, access="read")
    Budget.objects.create(
        name="tool calls per run",
        kind=BudgetKind.TOOL_CALLS,
        scope=BudgetScope.RUN,
        agent=agent,
        limit=10,
    )
    Budget.objects.create(
        name="tokens per day",
        kind=BudgetKind.TOKENS,
        scope=BudgetScope.AGENT_DAY,
        agent=agent,
        limit=100_000,
    )
    credential, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="sdk end-to-end"
    )
    return LiveAgent(
        url=live_server.url,
        key=issued.plaintext,
        agent=agent,
        credential=credential,
        owner=org.owner,
    )
