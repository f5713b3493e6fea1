"""An agent with gated tools, a running run, and approvers: what approval tests start from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.models import User
from apps.approvals.gates import forget_gates
from apps.approvals.models import RiskGate
from apps.registry import services as registry
from apps.registry.models import Agent, Tool
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, decide, forget_caches
from apps.runtime.models import Decision, Run

from ..factories import make_tool, make_user


@dataclass
class Gated:
    agent: Agent
    refund: Tool  # critical: asks, two approvers
    notify: Tool  # high: asks (the default gate), one approver
    lookup: Tool  # low: allowed
    run: Run
    token: str
    approver2: User  # a second approver in claims
    requester: User  # the person the run acts for
    secret: str  # the agent credential, for an SDK client

    def ask(self, tool: str = "payments-refund", action: str = "create", **extra: Any) -> Decision:
        arguments = extra.pop(
            "arguments", {"amount": 120, "order": "A-1", "customer": "c@example.com"}
        )
        return decide(
            run=self.run,
            request=DecisionRequest(
                action="tool.invoke", tool=tool, tool_action=action, arguments=arguments, **extra
            ),
        )


@pytest.fixture(autouse=True)
def fresh_caches():
    import redis
    from django.conf import settings

    forget_caches()
    forget_gates()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    yield
    forget_caches()
    forget_gates()


@pytest.fixture
def gated(org) -> Gated:
    refund = make_tool(
        "payments-refund",
        actions=["create"],
        risk_class="critical",
        input_schema={
            "type": "object",
            "properties": {
                "amount": {"type": "number"},
                "order": {"type": "string"},
                "customer": {"type": "string"},
            },
            "required": ["amount"],
        },
        reversible=False,
        rollback_hint="Refunds cannot be pulled back; issue a charge instead.",
        blast_radius={"money": "/amount", "currency": "EUR", "people": "/customer"},
        systems=["Stripe", "Ledger"],
    )
    notify = make_tool(
        "customer-email",
        actions=["send"],
        risk_class="high",
        input_schema={"type": "object"},
    )
    lookup = make_tool("crm-lookup", actions=["read"], input_schema={"type": "object"})
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Refunds",
            "slug": "refunds-agent",
            "mission": "Refund customers.",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
            "rollback_action": "Reverse the ledger entry from the refunds console.",
            "rollback_contact": "payments-oncall@example.com",
        },
    )
    for tool, actions in ((refund, ["create"]), (notify, ["send"]), (lookup, ["read"])):
        registry.grant_set(
            actor=org.owner, agent=agent, tool=tool, actions=actions, environments=["prod"]
        )
    requester = make_user("rita", ("owner", org.claims), email="rita@example.com")
    credential, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="worker"
    )
    credential = runtime.credential_authenticate(issued.plaintext)
    runtime.delegation_grant(
        person=requester, agent=agent, expires_at=timezone.now() + timedelta(days=1)
    )
    run, token = runtime.run_start(
        credential=credential, task="Refund order A-1", on_behalf_of="rita"
    )
    approver2 = make_user("dave", ("approver", org.claims), email="dave@example.com")
    # This organisation asks a person before high-risk steps too (the default leaves them to
    # the agent's autonomy level).
    RiskGate.objects.create(risk_class="high", outcome="ask", approvals_required=1)
    return Gated(agent, refund, notify, lookup, run, token, approver2, requester, issued.plaintext)
