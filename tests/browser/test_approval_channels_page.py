"""The notification channels page in real Chromium: an admin sees the empty state, is told
what is wrong with a bad URL, adds a Slack-compatible channel pointing at a real local
receiver, sends it a test, and sees the channel's last deliveries."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import pytest

from apps.approvals import channel_services, notify, tasks
from apps.approvals.models import ApprovalRequest

from ..approvals import conftest as approvals_fixtures
from ..approvals.receiver import serve_receiver
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# The approval tests' fixtures: an agent whose critical step asks, and fresh caches.
gated = approvals_fixtures.gated
fresh_caches = approvals_fixtures.fresh_caches


def test_an_admin_adds_a_slack_channel_tests_it_and_sees_its_deliveries(
    org: Any,
    gated: Any,
    new_page: Any,
    shoot: Any,
) -> None:
    # No worker here: what is queued waits in the broker, and the test runs the tasks itself.
    for user in (org.approver, org.admin):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])

    with serve_receiver() as receiver:
        page = new_page()
        log_in(page, "ada", PASSWORD)
        page.goto("/approvals/channels/")
        assert page.title() == "Notification channels · Tether"
        assert page.get_by_text("No channels yet.").is_visible()
        shoot(page, "approval-channels-empty")

        page.get_by_label("Name", exact=True).fill("#claims-approvals")
        page.get_by_label("Kind", exact=True).select_option("slack")
        page.get_by_label("Send to", exact=True).fill("hooks.slack.com/services/T0/B0/x")
        page.get_by_role("button", name="Add channel").click()
        assert (
            page.get_by_role("alert")
            .get_by_text("Enter a full http:// or https:// URL")
            .is_visible()
        )
        shoot(page, "approval-channels-bad-url", full_page=False)

        page.get_by_label("Send to", exact=True).fill(receiver.url("/services/T0/B0/secret-part"))
        page.get_by_label("Department (optional)", exact=True).select_option("claims")
        page.get_by_role("button", name="Add channel").click()
        assert page.get_by_text("Added #claims-approvals.").is_visible()

        page.get_by_role("button", name="Send a test to #claims-approvals").click()
        assert page.get_by_text("Sent a test message to #claims-approvals").is_visible()
        assert len(receiver.requests) == 1

        # A ticketing webhook nobody listens on, to show a failure.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        channel_services.channel_create(
            actor=org.admin,
            name="Ticketing",
            kind="webhook",
            target=f"http://127.0.0.1:{closed_port}/tether",
        )

        # A request comes in: the channels and the approvers in scope are told.
        decision = gated.ask(reason="Customer was charged twice for order A-1.")
        approval = ApprovalRequest.objects.get(pk=decision.approval.pk)
        for delivery_id in tasks.notify(str(approval.pk), "created"):
            with contextlib.suppress(notify.RetryableDeliveryError):  # a worker retries it
                tasks.deliver(delivery_id)
        assert len(receiver.requests) == 2

        page.goto("/approvals/channels/")
        table = page.get_by_role("region", name="Channels")
        row = table.get_by_role("row").filter(has_text="#claims-approvals")
        assert row.get_by_text("Claims only").is_visible()
        assert row.get_by_text("Sent", exact=True).is_visible()
        assert "secret-part" not in row.inner_text()  # a Slack URL's path is its credential
        builtin = table.get_by_role("row").filter(has_text="Approvers in scope")
        assert builtin.get_by_text("Sent", exact=True).is_visible()
        assert builtin.get_by_role("button", name="Delete Approvers in scope").count() == 0
        ticketing = table.get_by_role("row").filter(has_text="Ticketing")
        assert ticketing.get_by_text("Failed (retrying)").is_visible()
        assert ticketing.get_by_text("Could not reach 127.0.0.1").is_visible()
        shoot(page, "approval-channels-listed")

        page.get_by_role("button", name="Disable #claims-approvals").click()
        assert page.get_by_text("#claims-approvals is disabled").is_visible()
        assert row.get_by_text("Disabled", exact=True).is_visible()
