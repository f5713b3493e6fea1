"""An admin writes a Cedar forbid policy in real Chromium: a syntax error is shown inline, the
fix is saved, "try it" shows the deny and the policy that fired; a draft is tried, saved as
version 2 and compared. Every policy page is screenshotted."""

from __future__ import annotations

from typing import Any

import pytest

from apps.registry.constants import RiskClass
from apps.registry.models import ToolGrant

from ..factories import PASSWORD, make_agent, make_tool
from .helpers import log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

BROKEN = (
    "// Refunds over 1,000 wait for a person, whichever agent asks.\n"
    'forbid(principal, action == Action::"tool.invoke", resource == Tool::"refund-issue")\n'
    "  when { context has amount && context.amount > 1000 "
)
FIXED = BROKEN + "};"


def fill_try(page: Any, *, amount: str) -> None:
    page.select_option("#id_agent", "claims-triage")
    page.select_option("#id_action", "tool.invoke")
    page.fill("#id_resource", "refund-issue")
    page.select_option("#id_environment", "prod")
    page.fill("#id_tool_action", "issue")
    page.fill("#id_amount", amount)


def test_admin_writes_a_forbid_policy_fixes_its_syntax_and_tries_it(
    org: Any, new_page: Any, shoot: Any
) -> None:
    agent = make_agent(org.claims, org.owner, "claims-triage", name="Claims triage")
    refund = make_tool(
        "refund-issue", name="Refund issue", actions=["issue"], risk_class=RiskClass.HIGH
    )
    ToolGrant.objects.create(agent=agent, tool=refund, actions=["issue"], environments=["prod"])

    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.get_by_role("link", name="Policies").click()
    assert page.title() == "Policies · Tether"
    assert page.get_by_role("heading", name="No admin policies yet").is_visible()
    shoot(page, "policy-list-empty")

    # Write it with a syntax error: the editor says where, and nothing is saved.
    page.get_by_role("link", name="Write the first policy").click()
    assert page.title() == "Write a policy · Policies · Tether"
    shoot(page, "policy-form")
    page.fill("#id_name", "Large refunds")
    page.fill("#id_slug", "large-refunds")
    page.fill("#id_description", "Refunds over 1,000 need a person's approval.")
    page.fill("#id_text", BROKEN)
    page.get_by_role("button", name="Save policy").click()
    error = page.locator("#id_text_error")
    assert "Line 3, column" in error.inner_text()
    assert "Syntax error: unexpected end of input" in error.inner_text()
    assert page.get_by_role("alert").is_visible()
    shoot(page, "policy-form-errors")

    # Fix it and save: the detail page shows the statement under its id.
    page.fill("#id_text", FIXED)
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_url("**/policies/large-refunds/")
    assert page.get_by_role("heading", name="Large refunds", exact=True).is_visible()
    assert page.locator("code.policy-id", has_text="large-refunds").first.is_visible()

    # Try it: a 5,000 refund is denied, and the policy that fired is named.
    fill_try(page, amount="5000")
    page.get_by_role("button", name="Try it", exact=True).click()
    verdict = page.locator("#try-result .decision")
    verdict.wait_for()
    assert verdict.locator(".badge--decision-deny").inner_text() == "Deny"
    assert verdict.locator("code.policy-id").inner_text() == "large-refunds"
    shoot(page, "policy-detail-try-deny")

    # A small refund is allowed by the grant compiled from the registry.
    page.fill("#id_amount", "200")
    page.get_by_role("button", name="Try it", exact=True).click()
    page.locator("#try-result .badge--decision-allow").wait_for()
    assert (
        page.locator("#try-result code.policy-id").inner_text()
        == "registry.grant.claims-triage.refund-issue"
    )

    # Edit: try a draft with a higher limit before saving it, then compare the versions.
    page.get_by_role("link", name="Edit policy").click()
    page.fill("#id_text", FIXED.replace("1000", "9000").replace("1,000", "9,000"))
    fill_try(page, amount="5000")
    page.get_by_role("button", name="Try it with this draft").click()
    page.locator("#try-result .badge--decision-allow").wait_for()
    shoot(page, "policy-edit-try-draft")
    page.fill("#id_comment", "Raise the limit to 9,000")
    page.get_by_role("button", name="Save policy").click()
    page.wait_for_url("**/policies/large-refunds/")
    assert page.get_by_text("Raise the limit to 9,000").is_visible()
    shoot(page, "policy-detail")
    page.get_by_role("button", name="Compare selected versions").click()
    assert page.title() == "v1 → v2 · Large refunds · Tether"
    assert page.locator(".diff .line--add").first.is_visible()
    shoot(page, "policy-diff")

    page.goto("/policies/")
    shoot(page, "policy-list")
    page.goto("/policies/effective/?agent=claims-triage")
    assert page.locator("code.policy-id", has_text="baseline.model-call").is_visible()
    shoot(page, "policy-effective")
    page.goto("/policies/try/")
    fill_try(page, amount="20000")
    page.get_by_role("button", name="Try it", exact=True).click()
    page.locator("#try-result .badge--decision-deny").wait_for()
    shoot(page, "policy-try")


def test_an_owner_sees_no_policies_link_and_gets_403(org: Any, new_page: Any, shoot: Any) -> None:
    page = new_page()
    log_in(page, "alice", PASSWORD)
    assert page.get_by_role("link", name="Policies").count() == 0
    response = page.goto("/policies/")
    assert response is not None and response.status == 403
    shoot(page, "policy-list-403")
