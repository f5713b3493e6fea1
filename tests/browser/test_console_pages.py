"""Every console page in real Chromium, at laptop and tablet widths, with a screenshot each
(test-artifacts/screenshots/). The assertions check what a person must be able to read."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import User
from apps.registry import services
from apps.registry.constants import RiskClass
from apps.registry.models import Agent, MemoryStore

from ..factories import PASSWORD, make_department, make_team, make_user
from .helpers import TABLET, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

OBJECT_SCHEMA = {
    "type": "object",
    "properties": {"customer_id": {"type": "string", "pattern": "^C[0-9]{6}$"}},
    "required": ["customer_id"],
    "additionalProperties": False,
}


def _tool(admin: User, slug: str, name: str, risk: str, actions: list[str], **extra: Any) -> Any:
    data = {
        "name": name, "slug": slug, "risk_class": risk, "actions": actions,
        "description": extra.pop("description", f"{name} for agents."),
        "input_schema": OBJECT_SCHEMA, "output_schema": {"type": "object"},
        "data_classes": extra.pop("data_classes", ["internal"]),
    }  # fmt: skip
    data.update(extra)
    return services.tool_create(actor=admin, data=data)


def seed_organisation(org: Any) -> dict[str, Any]:
    """A small but realistic organisation: four departments, tools, stores, agents, versions."""
    admin = org.admin
    for user, first, last in ((org.owner, "Alice", "Moreau"), (org.other_owner, "Bob", "Okafor")):
        User.objects.filter(pk=user.pk).update(first_name=first, last_name=last)
    service = make_department("customer-service", name="Customer Service")
    make_team(service, "chat-support", name="Chat Support")
    make_department("it-ops", name="IT Operations")
    priya = make_user("priya", ("owner", service), first_name="Priya", last_name="Shah")

    crm = _tool(admin, "crm-lookup", "CRM lookup", RiskClass.LOW, ["read"],
                data_classes=["internal", "pii"], rate_limit_per_minute=120,
                audit_event="crm.record.read")  # fmt: skip
    tickets = _tool(admin, "ticket-update", "Ticket update", RiskClass.MEDIUM,
                    ["read", "comment", "close"], audit_event="helpdesk.ticket.updated")  # fmt: skip
    refund = _tool(admin, "refund-issue", "Refund issue", RiskClass.CRITICAL, ["issue", "void"],
                   approval_required=True, reversible=True, rollback_hint="Void the refund by id.",
                   data_classes=["financial", "pii"],
                   prohibitions="Never refunds more than the original payment.",
                   capabilities="Issues a refund to the original payment method.")  # fmt: skip
    payout = _tool(admin, "payout-transfer", "Payout transfer", RiskClass.CRITICAL, ["transfer"],
                   reversible=False, data_classes=["financial"],
                   prohibitions="Never pays an account that is not on file.")  # fmt: skip
    email = _tool(admin, "email-send", "Email send", RiskClass.HIGH, ["send"],
                  data_classes=["pii"])  # fmt: skip
    _tool(admin, "kb-search", "Knowledge base search", RiskClass.LOW, ["search"],
          data_classes=["public", "internal"])  # fmt: skip

    notes = services.memory_store_create(actor=admin, data={
        "name": "Claim case notes", "slug": "claim-case-notes", "store_class": "durable",
        "retention_days": 365, "data_classes": ["pii", "confidential"],
        "description": "Adjusters' and agents' notes per claim.",
    })  # fmt: skip
    services.memory_store_create(actor=admin, data={
        "name": "Run scratchpad", "slug": "run-scratchpad", "store_class": "working",
    })  # fmt: skip
    vault = services.memory_store_create(actor=admin, data={
        "name": "Card vault", "slug": "card-vault", "store_class": "forbidden",
        "data_classes": ["financial"],
    })  # fmt: skip

    def agent(actor: User, slug: str, name: str, department: Any, **extra: Any) -> Agent:
        data = {
            "name": name, "slug": slug, "department": department, "status": "active",
            "mission": extra.pop("mission", f"{name} for the {department.name} team."),
            "environments": extra.pop("environments", ["dev", "staging", "prod"]),
            "model_family": "gpt-4.1", "default_model": "gpt-4.1-mini", "providers": ["openai"],
        }  # fmt: skip
        data.update(extra)
        return services.agent_create(actor=actor, data=data)

    triage = agent(
        admin, "claims-triage", "Claims triage", org.claims, owner=org.owner, team=org.claims_ops,
        mission="Sort incoming claims by urgency and route each to the right adjuster.",
        business_process="First notice of loss", autonomy_level=2, tags=["claims", "pii"],
        shutdown_action="Pause the intake queue; new claims wait for a person.",
        shutdown_contact="claims-oncall@example.com",
        rollback_action="Re-route claims handled since the last good version by hand.",
        rollback_contact="Alice Moreau", knowledge_base_version="claims-policies-2025-06",
        parameters={"temperature": 0.2, "max_tokens": 800},
        instructions="You triage insurance claims.\nNever promise a payout.\nAsk when unsure.",
    )  # fmt: skip
    services.grant_set(actor=org.owner, agent=triage, tool=crm, actions=["read"],
                       environments=["dev", "staging", "prod"])  # fmt: skip
    services.grant_set(actor=org.owner, agent=triage, tool=tickets, actions=["read", "comment"],
                       environments=["dev", "prod"], constraints={"max_per_hour": 200})  # fmt: skip
    services.memory_binding_set(actor=org.owner, agent=triage, store=notes, access="read_write")
    services.agent_update(
        actor=org.owner, agent=triage, summary="Escalate fraud; cheaper model",
        data={"default_model": "gpt-4.1-nano", "instructions":
              "You triage insurance claims.\nNever promise a payout.\n"
              "Escalate suspected fraud to a person.\nAsk when unsure."},
    )  # fmt: skip

    refunds = agent(admin, "refund-assistant", "Refund assistant", org.payments,
                    owner=org.other_owner, autonomy_level=3, tags=["payments"])  # fmt: skip
    services.grant_set(actor=admin, agent=refunds, tool=refund, actions=["issue"],
                       environments=["prod"], constraints={"max_amount": 500, "currency": "EUR"})  # fmt: skip
    services.grant_set(actor=admin, agent=refunds, tool=payout, actions=["transfer"],
                       environments=["prod"])  # fmt: skip
    services.memory_binding_set(actor=admin, agent=refunds, store=vault, access="read")
    chat = agent(admin, "chat-concierge", "Chat concierge", service, owner=priya,
                 environments=["dev", "canary", "prod"], autonomy_level=1)  # fmt: skip
    services.grant_set(
        actor=admin, agent=chat, tool=email, actions=["send"], environments=["canary"]
    )
    agent(admin, "fraud-watch", "Fraud watch", org.claims, owner=None, status="active")
    agent(admin, "invoice-reader", "Invoice reader", org.payments, owner=org.other_owner,
          status="draft", environments=["dev"])  # fmt: skip
    agent(admin, "legacy-faq-bot", "Legacy FAQ bot", service, owner=priya, status="retired")
    agent(admin, "password-reset", "Password reset helper", service, owner=priya,
          status="suspended")  # fmt: skip
    return {"triage": triage}


def test_every_console_page_renders_readably_at_laptop_and_tablet_width(
    org: Any, new_page: Any, shoot: Any
) -> None:
    seed_organisation(org)
    page = new_page()
    log_in(page, "ada", PASSWORD)

    assert page.title() == "Overview · Tether"
    assert page.get_by_role("heading", name="Unowned agents").is_visible()
    assert page.get_by_text("Fraud watch").first.is_visible()
    ungated = page.locator("#ungated")
    assert "Refund assistant" in ungated.inner_text() and "Payout transfer" in ungated.inner_text()
    assert "Refund issue" not in ungated.inner_text()  # gated by approval
    shoot(page, "home-full")

    page.goto("/agents/")
    assert page.locator("tbody tr").count() == 7
    assert page.locator("td .badge--unowned").first.is_visible()
    shoot(page, "agent-list")
    with page.expect_response(lambda r: "risk=critical" in r.url):
        page.select_option("#id_risk", "critical")
    page.wait_for_function("document.querySelectorAll('#agent-table tbody tr').length === 1")
    shoot(page, "agent-list-filtered")

    page.goto("/agents/claims-triage/")
    assert page.title() == "Claims triage · Agents · Tether"
    for text in ("First notice of loss", "claims-policies-2025-06", "Pause the intake queue",
                 "L2 · Supervised", "Claim case notes", "Ticket update"):  # fmt: skip
        assert page.get_by_text(text).first.is_visible(), text
    page.get_by_text("Show instructions").click()
    assert page.get_by_text("Escalate suspected fraud").first.is_visible()
    shoot(page, "agent-detail")

    page.goto("/agents/claims-triage/versions/")
    assert page.locator("tbody tr").count() == 5
    shoot(page, "history-rich")
    page.locator("#a-1").check()
    page.locator("#b-5").check()
    page.get_by_role("button", name="Compare selected versions").click()
    page.wait_for_url("**/versions/diff/**")
    assert page.get_by_role("rowheader", name="default_model").is_visible()
    assert page.get_by_text("tools: crm-lookup").is_visible()
    assert page.get_by_text("memory: claim-case-notes").is_visible()
    shoot(page, "diff-rich")

    page.goto("/agents/claims-triage/grants/ticket-update/")
    shoot(page, "grant-edit")
    page.goto("/agents/claims-triage/memory/new/")
    shoot(page, "binding-form")

    page.goto("/tools/")
    assert page.locator("tbody tr").count() == 6
    shoot(page, "tools")
    page.goto("/tools/refund-issue/")
    assert page.get_by_text("Never refunds more than the original payment.").is_visible()
    assert page.get_by_role("link", name="Refund assistant").is_visible()
    shoot(page, "tool-detail")
    page.goto("/tools/new/")
    page.fill("#id_name", "Broken tool")
    page.fill("#id_slug", "broken-tool")
    page.fill("#id_description", "Has a bad schema.")
    page.fill("#id_actions", "read")
    page.fill("#id_input_schema", '{"type": "object", "properties": {"id": {"type": "strng"}}}')
    page.get_by_role("button", name="Register tool").click()
    error = page.locator("#id_input_schema_error").inner_text()
    assert "Invalid JSON Schema at properties/id/type" in error, error
    shoot(page, "tool-form-errors")

    page.goto("/memory/")
    assert page.locator("tbody tr").count() == 3
    shoot(page, "memory")
    page.goto("/memory/claim-case-notes/")
    assert page.get_by_role("link", name="Claims triage").is_visible()
    shoot(page, "memory-detail")
    page.goto("/memory/new/")
    page.get_by_role("button", name="Register store").click()
    shoot(page, "memory-form-errors")

    page.goto("/audit/")
    assert page.title() == "Audit log · Tether"
    page.locator("details.toggle summary").first.click()
    shoot(page, "audit")

    page.goto("/accounts/tokens/")
    page.fill("#id_name", "CI manifest apply")
    page.get_by_role("button", name="Create token").click()
    assert page.locator("#new-token").inner_text().startswith("tth_user_")
    shoot(page, "tokens")

    response = page.goto("/agents/no-such-agent/")
    assert response is not None and response.status == 404
    shoot(page, "not-found")

    # A reader (approver in Claims) sees the agent but no buttons that change it.
    reader = new_page()
    log_in(reader, "carol", PASSWORD)
    reader.goto("/agents/claims-triage/")
    assert reader.get_by_role("link", name="Edit agent").count() == 0
    assert reader.get_by_role("button", name="Revoke").count() == 0
    shoot(reader, "agent-detail-approver")

    # Tablet width: navigation wraps, tables drop optional columns, nothing overlaps.
    tablet = new_page(TABLET)
    log_in(tablet, "ada", PASSWORD)
    shoot(tablet, "tablet-home")
    for url, name in (("/agents/", "tablet-agent-list"), ("/agents/claims-triage/", "tablet-agent-detail"),
                      ("/agents/claims-triage/edit/", "tablet-agent-edit"), ("/tools/refund-issue/",
                      "tablet-tool-detail"), ("/audit/", "tablet-audit")):  # fmt: skip
        tablet.goto(url)
        shoot(tablet, name)
        overflow = tablet.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{url} scrolls sideways by {overflow}px"

    # Two hundred more agents: the list stays one readable table with a sticky header.
    Agent.objects.bulk_create(
        Agent(
            name=f"Batch agent {n:03}", slug=f"batch-agent-{n:03}", mission="Bulk-registered.",
            department=org.claims if n % 2 else org.payments, owner=org.owner if n % 3 else None,
            status=("active", "draft", "suspended", "retired")[n % 4],
            environments=[["dev"], ["dev", "prod"], ["staging", "canary", "prod"]][n % 3],
        )
        for n in range(200)
    )  # fmt: skip
    page.goto("/agents/")
    assert page.locator("tbody tr").count() == 207
    shoot(page, "agent-list-200")
    page.mouse.wheel(0, 3000)
    page.wait_for_timeout(200)
    header_top = page.evaluate("document.querySelector('thead th').getBoundingClientRect().top")
    assert abs(header_top) < 2, f"the table header scrolled away (top={header_top})"
    shoot(page, "agent-list-200-scrolled", full_page=False)
    tablet.goto("/agents/")
    shoot(tablet, "tablet-agent-list-200", full_page=False)
    assert MemoryStore.objects.count() == 3
