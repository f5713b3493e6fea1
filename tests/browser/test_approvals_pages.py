"""The approvals console in real Chromium: the inbox (empty, long, filtered, by keyboard),
a request's page with its diff and blast radius, the gates and delegations pages."""

from __future__ import annotations

from typing import Any

import pytest

from apps.approvals.models import ApprovalRequest

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..factories import PASSWORD
from .helpers import TABLET, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PREVIEW = {
    "format": "table",
    "key": "order",
    "current": [
        {"order": "A-1", "status": "charged", "refunded": "0.00"},
        {"order": "A-2", "status": "charged", "refunded": "0.00"},
    ],
    "proposed": [
        {"order": "A-1", "status": "refunded", "refunded": "120.00"},
        {"order": "A-2", "status": "charged", "refunded": "0.00"},
        {"order": "A-3", "status": "credit", "refunded": "5.00"},
    ],
}


@pytest.fixture
def site_url(asgi_server: Any) -> str:
    return str(asgi_server.url)


def test_an_empty_inbox_says_what_happens_next(org: Any, new_page: Any, shoot: Any) -> None:
    page = new_page()
    log_in(page, "carol", PASSWORD)
    page.goto("/approvals/")
    assert page.title() == "Approvals · Tether"
    page.get_by_text("Nothing waits for you.").wait_for()
    page.get_by_role("status").filter(has_text="Live").wait_for(timeout=5000)
    shoot(page, "approvals-inbox-empty")


def test_a_long_inbox_filters_by_risk_and_moves_by_keyboard(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    gated.ask(reason="Customer was charged twice for order A-1.", preview=PREVIEW)
    for n in range(24):
        gated.ask(
            tool="customer-email",
            action="send",
            arguments={"to": f"customer{n}@example.com", "subject": f"Your refund #{n}"},
            reason=f"Tell customer {n} the refund is on its way.",
        )
    page = new_page()
    log_in(page, "carol", PASSWORD)
    page.goto("/approvals/")
    rows = page.locator("#queue tbody tr")
    assert rows.count() == 25
    assert page.locator("#inbox-counts a").all_inner_texts() == [
        "All 25", "Low 0", "Medium 0", "High 24", "Critical 1",
    ]  # fmt: skip
    shoot(page, "approvals-inbox-long")

    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.locator("tr.is-selected").get_attribute("data-approval") == rows.nth(
        1
    ).get_attribute("data-approval")
    page.keyboard.press("r")
    page.get_by_role("dialog").wait_for()
    page.get_by_label("Reason (the agent receives it)").fill("Not before the refund lands.")
    shoot(page, "approvals-inbox-reject-dialog", full_page=False)
    page.get_by_role("dialog").get_by_role("button", name="Reject").click()
    page.get_by_text("The request is rejected").wait_for()
    assert ApprovalRequest.objects.filter(status="rejected").count() == 1

    page.get_by_role("link", name="Critical 1").click()
    assert page.locator("#queue tbody tr").count() == 1


def test_a_request_page_shows_who_what_why_diff_blast_radius_and_rollback(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    approval = gated.ask(
        reason="Customer was charged twice for order A-1.", preview=PREVIEW
    ).approval
    page = new_page()
    log_in(page, "carol", PASSWORD)
    page.goto(f"/approvals/{approval.pk}/")
    assert page.title().startswith("Approval: payments-refund.create for refunds-agent")
    assert page.locator(".diff-add").count() >= 1  # the new row A-3
    assert "120" in page.locator("#blast-title + *").inner_text() or page.get_by_text("EUR").count()
    page.get_by_text("Refunds cannot be pulled back").wait_for()
    shoot(page, "approvals-request")

    page.keyboard.press("a")
    page.get_by_text("Approval recorded (1 of 2)").wait_for()
    shoot(page, "approvals-request-one-of-two")


def test_the_owner_sees_why_they_cannot_approve_on_a_tablet(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    approval = gated.ask(preview=PREVIEW).approval
    org.owner.role_assignments.create(role="approver", department=org.claims)
    page = new_page(TABLET)
    log_in(page, "alice", PASSWORD)
    page.goto(f"/approvals/{approval.pk}/")
    page.get_by_text("Separation of duties").wait_for()
    shoot(page, "approvals-request-owner-blocked")


def test_the_gates_and_delegations_pages(org: Any, new_page: Any, shoot: Any) -> None:
    page = new_page()
    log_in(page, "ada", PASSWORD)
    page.goto("/approvals/gates/")
    assert page.title() == "Approval gates · Tether"
    page.locator('[name="gate-risk_class"]').select_option("critical")
    page.locator('[name="gate-outcome"]').select_option("allow")
    page.get_by_role("button", name="Save gate").click()
    page.get_by_text("Critical actions cannot happen without approval").first.wait_for()
    shoot(page, "approvals-gates-error")

    page.goto("/approvals/delegations/")
    assert page.title() == "Approval delegations · Tether"
    shoot(page, "approvals-delegations")
