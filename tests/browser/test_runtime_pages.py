"""The runtime console in real Chromium: an owner issues and rotates a credential (its secret
shown once), explores decisions, and an approver delegates to the agent and revokes it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.runtime.decisions import DecisionRequest, decide, forget_caches
from apps.runtime.models import AgentCredential, Budget, Delegation

from ..factories import PASSWORD
from ..runtime.conftest import setup, start_run  # noqa: F401  (the `setup` fixture)
from .helpers import TABLET, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def _decisions(setup: Any) -> None:  # noqa: F811
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # budget counters of earlier runs
    forget_caches()
    run, _ = start_run(setup)
    for customer in ("c-1", "c-2"):
        decide(
            run=run,
            request=DecisionRequest(
                action="tool.invoke", tool="crm-lookup", tool_action="read",
                arguments={"customer_id": customer},
            ),
        )  # fmt: skip
    decide(
        run=run,
        request=DecisionRequest(action="tool.invoke", tool="no-such-tool", tool_action="read"),
    )
    decide(
        run=run,
        request=DecisionRequest(
            action="tool.invoke", tool="payment-refund", tool_action="create",
            arguments={"amount": 900},
        ),
    )  # fmt: skip


def test_owner_manages_credentials_and_explores_decisions_and_approver_delegates(
    org: Any,
    setup: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    Budget.objects.create(
        name="Daily tool calls", kind="tool_calls", scope="agent_day", agent=setup.agent, limit=20
    )
    Budget.objects.create(
        name="Tokens per run", kind="tokens", scope="run", agent=setup.agent, limit=50000
    )
    Budget.objects.create(
        name="Claims monthly spend", kind="spend", scope="department_month",
        department=org.claims, limit=250, edge="degrade", degrade_to_model="gpt-4.1-mini",
    )  # fmt: skip
    _decisions(setup)

    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, "alice", PASSWORD)
    page.goto(setup.agent.get_absolute_url())
    assert page.get_by_role("heading", name="Credentials").is_visible()
    assert page.get_by_role("heading", name="Recent decisions").is_visible()
    assert page.get_by_role("heading", name="Budgets").is_visible()
    assert page.get_by_text("2 used of 20").is_visible()
    shoot(page, "runtime-agent-detail")

    # Budget use is live: another decision shows up in the card without a reload.
    run, _ = start_run(setup)
    decide(
        run=run,
        request=DecisionRequest(
            action="tool.invoke", tool="crm-lookup", tool_action="read",
            arguments={"customer_id": "c-3"},
        ),
    )  # fmt: skip
    page.get_by_text("3 used of 20").wait_for(timeout=15_000)

    # Issue: the secret is shown once, on the response only.
    page.get_by_role("link", name="Issue a credential").click()
    page.fill("#id_name", "staging worker")
    page.select_option("#id_environment", "dev")
    shoot(page, "runtime-credential-form")
    page.get_by_role("button", name="Issue credential").click()
    secret = page.locator("#new-credential").inner_text()
    assert secret.startswith("tth_agent_")
    shoot(page, "runtime-credential-issued")
    page.get_by_role("link", name="Back to Claims triage").click()
    assert secret not in page.content()
    assert page.get_by_text("staging worker").is_visible()

    # Rotate the original one (confirm dialog accepted), then see it marked rotated.
    page.get_by_role("button", name="Rotate prod worker").click()
    assert page.get_by_role("heading", name="Credential rotated").is_visible()
    rotated = page.locator("#new-credential").inner_text()
    assert rotated.startswith("tth_agent_") and rotated != setup.secret
    page.go_back()
    page.reload()
    assert rotated not in page.content()
    assert AgentCredential.objects.filter(revoked_at__isnull=False).count() == 1

    # The explorer, then filtered, then one decision.
    page.get_by_role("link", name="All decisions").click()
    assert page.get_by_role("heading", name="Decisions", exact=True).is_visible()
    shoot(page, "runtime-decisions")
    page.select_option("#id_disposition", "deny")
    page.get_by_role("button", name="Filter").click()
    assert page.locator("tbody tr").count() == 2
    shoot(page, "runtime-decisions-filtered")
    page.locator("tbody tr").first.get_by_role("link").first.click()
    assert page.get_by_role("heading", name="Why").is_visible()
    shoot(page, "runtime-decision-detail")

    tablet = new_page(viewport=TABLET)
    log_in(tablet, "alice", PASSWORD)
    tablet.goto("/decisions/")
    shoot(tablet, "runtime-decisions-tablet")

    # An approver reads the credentials without buttons, and delegates to the agent.
    approver = new_page()
    approver.on("dialog", lambda dialog: dialog.accept())
    log_in(approver, "carol", PASSWORD)
    approver.goto(setup.agent.get_absolute_url())
    assert approver.get_by_role("link", name="Issue a credential").count() == 0
    assert approver.get_by_role("button", name="Revoke staging worker").count() == 0
    shoot(approver, "runtime-agent-detail-approver")
    approver.get_by_role("link", name="Delegations").click()
    approver.select_option("#id_agent", "claims-triage")
    approver.select_option("#id_tools", ["crm-lookup"])
    expires = (timezone.now() + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M")
    approver.fill("#id_expires_at", expires)
    approver.fill("#id_note", "Handle my claims while I am away")
    approver.get_by_role("button", name="Delegate").click()
    assert approver.get_by_text("may now act on your behalf").is_visible()
    shoot(approver, "runtime-delegations")
    approver.get_by_role("button", name="Revoke the delegation to Claims triage").click()
    assert approver.get_by_text("Revoked your delegation").is_visible()
    assert Delegation.objects.get().revoked_at is not None
    approver.fill("#id_expires_at", "2001-01-01T00:00")
    approver.select_option("#id_agent", "claims-triage")
    approver.get_by_role("button", name="Delegate").click()
    assert approver.get_by_role("alert").is_visible()
    shoot(approver, "runtime-delegations-error")
