"""An owner declares what approvers see of a tool (preview format, blast radius, systems,
downstream tools) in the tool form in real Chromium, is told about a bad pointer, saves, and
reads it back on the tool page; another owner sees it without an edit button."""

from __future__ import annotations

from typing import Any

import pytest

from apps.registry.constants import RiskClass
from apps.registry.models import Tool

from ..factories import PASSWORD, make_tool
from .helpers import TABLET, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "payment_id": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "customer_email": {"type": "string", "format": "email"},
    },
    "required": ["payment_id", "amount", "currency"],
}


def test_owner_declares_what_approvers_see_and_reads_it_on_the_tool_page(
    org: Any, new_page: Any, shoot: Any
) -> None:
    make_tool("ledger-post", name="Ledger post", risk_class=RiskClass.HIGH, owner=org.owner)
    refund = make_tool(
        "payment-refund",
        name="Payment refund",
        risk_class=RiskClass.HIGH,
        owner=org.owner,
        approval_required=True,
        reversible=False,
        input_schema=REFUND_SCHEMA,
    )
    page = new_page()
    log_in(page, "alice", PASSWORD)

    page.goto(refund.get_absolute_url())
    section = page.get_by_role("region", name="What approvers see")
    assert "Nothing declared" in section.inner_text()
    section.get_by_role("link", name="Add a preview format and blast radius").click()
    assert page.title() == "Edit Payment refund · Tools · Tether"

    page.get_by_label("Preview format").select_option("json")
    page.locator("#id_blast_radius_records").fill("/payment_id")
    page.locator("#id_blast_radius_people").fill("/customer_email")
    page.locator("#id_blast_radius_money").fill("amount")  # a mistake the form must explain
    page.locator("#id_blast_radius_currency").fill("/currency")
    page.get_by_label("Systems it reaches").fill("Stripe, Ledger")
    page.get_by_label("Tools it sets off").fill("ledger-post")
    page.get_by_role("button", name="Save tool").click()
    error = page.locator("#id_blast_radius_money_error")
    assert error.inner_text().strip().endswith("A JSON pointer starts with /, e.g. /amount.")
    assert (
        page.locator("#id_blast_radius_people").input_value() == "/customer_email"
    )  # the rest is kept
    shoot(page, "tool-approval-contract-form-error")

    page.locator("#id_blast_radius_money").fill("/amount")
    page.get_by_role("button", name="Save tool").click()
    # The fragment the edit link carried lands on the section just edited.
    page.wait_for_url("**/tools/payment-refund/#approvers")
    assert page.get_by_text("Saved the tool Payment refund.").is_visible()

    section = page.get_by_role("region", name="What approvers see")
    text = section.inner_text()
    assert "JSON (current and proposed)" in text
    for shown in ("Records: /payment_id", "People: /customer_email", "Money: /amount"):
        assert shown in text
    assert "Currency: /currency" in text
    assert section.get_by_text("Stripe", exact=True).is_visible()
    assert section.get_by_text("Ledger", exact=True).is_visible()
    downstream = section.get_by_role("link", name="Ledger post")
    assert downstream.get_attribute("href") == "/tools/ledger-post/"
    shoot(page, "tool-approval-contract-detail")

    tool = Tool.objects.get(slug="payment-refund")
    assert tool.blast_radius == {
        "records": "/payment_id",
        "people": "/customer_email",
        "money": "/amount",
        "currency": "/currency",
    }
    assert (tool.preview_format, tool.systems, tool.downstream_tools) == (
        "json",
        ["Stripe", "Ledger"],
        ["ledger-post"],
    )

    other = new_page(viewport=TABLET)
    log_in(other, "bob", PASSWORD)
    other.goto(refund.get_absolute_url())
    assert "Money: /amount" in other.get_by_role("region", name="What approvers see").inner_text()
    assert other.get_by_role("link", name="Edit tool").count() == 0
    shoot(other, "tool-approval-contract-detail-other-owner-tablet")
