"""Demo approval requests, so the embedded demo's inbox shows what an approver works with.

For active demo agents granted a tool whose step is gated in prod (high or critical after the
risk mappings): a running run asks for that step through the decision service, with a preview
of what would change, and is left waiting. Loaded once: run again, it changes nothing.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from apps.registry.constants import AgentStatus, RiskClass
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, decide
from apps.traces.demo import DEMO_ENVIRONMENT

from . import gates
from .models import ApprovalRequest

DEMO_REQUESTS = 4
CREDENTIAL_NAME = "demo approvals"  # marks the runs this loader made
GATED = {RiskClass.HIGH, RiskClass.CRITICAL}


# Steps of the demo's gated tools, as their agents would ask for them, with what would change.
STEPS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "claim-approve": (
        "approve",
        {"claim_id": "CLM-20261130", "decision": "approve", "amount": 1850.0, "currency": "EUR",
         "reason": "Water damage covered under section 4.2; deductible of 250 EUR applied."},
        "Coverage confirmed against the policy wording; payout within the 5,000 EUR grant.",
        {"format": "json",
         "current": {"claim": "CLM-20261130", "status": "under review", "payout": None,
                     "handler": "claims-adjudication"},
         "proposed": {"claim": "CLM-20261130", "status": "approved",
                      "payout": {"amount": 1850.0, "currency": "EUR"},
                      "handler": "claims-adjudication"}},
    ),
    "payment-refund": (
        "create",
        {"payment_id": "pay_4f8Kq2LmN7xTz1", "amount": 129.0, "currency": "EUR",
         "reason": "duplicate", "idempotency_key": "refund-ord-88123"},
        "The customer was charged twice for order 88123.",
        {"format": "table", "key": "payment",
         "current": [{"payment": "pay_4f8Kq2LmN7xTz1", "status": "captured", "refunded": "0.00"},
                     {"payment": "pay_9aR2Lk0PqW3mXy", "status": "captured", "refunded": "0.00"}],
         "proposed": [{"payment": "pay_4f8Kq2LmN7xTz1", "status": "refunded", "refunded": "129.00"},
                      {"payment": "pay_9aR2Lk0PqW3mXy", "status": "captured", "refunded": "0.00"}]},
    ),
    "email-send": (
        "send",
        {"to": ["j.moreau@example.com"], "subject": "Your claim CLM-20261130",
         "body_text": "Dear Ms Moreau,\n\nYour claim has been approved. The payout of 1,850 EUR will "
                      "reach your account within three working days.\n\nKind regards"},
        "Tell the claimant the decision.",
        {"format": "text", "current": "",
         "proposed": "Dear Ms Moreau,\n\nYour claim has been approved. The payout of 1,850 EUR "
                     "will reach your account within three working days.\n\nKind regards"},
    ),
    "access-grant": (
        "grant",
        {"employee_id": "E10442", "group": "finance-readonly", "duration_hours": 8,
         "justification": "Quarter-end close support, ticket TCK-0048812."},
        "Temporary read access for the quarter-end close.",
        {"format": "unified",
         "diff": "--- groups/finance-readonly\n+++ groups/finance-readonly\n@@ -1,3 +1,4 @@\n"
                 " E10021\n E10307\n E10388\n+E10442  (expires in 8 h)\n"},
    ),
}  # fmt: skip


def demo_approvals_load(*, actor: Any) -> int:
    """Open a few pending requests once; how many were opened (0 when requests exist)."""
    if ApprovalRequest.objects.filter(run__credential__name=CREDENTIAL_NAME).exists():
        return 0
    opened, asked = 0, set()
    for agent in Agent.objects.filter(status=AgentStatus.ACTIVE).order_by("slug"):
        if DEMO_ENVIRONMENT not in agent.environments:
            continue
        steps = []
        for grant in agent.grants.select_related("tool"):
            step = STEPS.get(grant.tool.slug)
            if (
                step is None
                or grant.tool.slug in asked
                or DEMO_ENVIRONMENT not in grant.environments
            ):
                continue
            action, arguments, reason, preview = step
            valid = Draft202012Validator(grant.tool.input_schema or {}).is_valid(arguments)
            risk = gates.risk_class_for(
                agent_id=agent.pk, tool_id=grant.tool_id, tool_risk=grant.tool.risk_class,
                action=action,
            )  # fmt: skip
            if (
                valid
                and action in grant.actions
                and (risk in GATED or grant.tool.approval_required)
            ):
                steps.append((grant.tool.slug, action, arguments, reason, preview))
                asked.add(grant.tool.slug)
        if not steps:
            continue
        credential, _ = runtime.credential_issue(
            actor=actor, agent=agent, environment=DEMO_ENVIRONMENT, name=CREDENTIAL_NAME
        )
        run, _ = runtime.run_start(credential=credential, task=f"Demo: {agent.mission[:200]}")
        for tool, action, arguments, reason, preview in steps:
            decision = decide(
                run=run,
                request=DecisionRequest(
                    action="tool.invoke", tool=tool, tool_action=action, arguments=arguments,
                    reason=reason, preview=preview,
                ),
            )  # fmt: skip
            opened += decision.disposition == "ask"
            if opened >= DEMO_REQUESTS:
                return opened
    return opened
