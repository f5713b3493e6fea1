"""The approval gate end to end, in real Chromium against the real ASGI app (uvicorn):

an approver has the inbox open; an agent's run (the SDK, in a thread) asks for a critical
refund and waits; the request appears without a reload; the approver opens it, sees the diff
and the blast radius, approves; a second approver approves in another browser; the SDK call
waiting in the agent returns ``allow`` and the tool body runs, once. A second use of the same
approval is refused; the agent's owner cannot approve its critical action.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..factories import PASSWORD
from .helpers import log_in

SDK = Path(__file__).resolve().parents[2] / "sdk"
if str(SDK) not in sys.path:
    sys.path.insert(0, str(SDK))

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOWN = 5_000  # ms: generous for a loaded machine; bench/approvals.py measures the latency
PREVIEW = {
    "format": "json",
    "current": {"order": "A-1", "status": "charged", "refunded": 0},
    "proposed": {"order": "A-1", "status": "refunded", "refunded": 120},
}


@pytest.fixture
def site_url(asgi_server: Any) -> str:
    return str(asgi_server.url)


def test_a_critical_refund_waits_for_two_approvers_then_runs_once(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    asgi_server: Any,
    shoot: Any,
) -> None:
    import tether

    carol = new_page()
    log_in(carol, "carol", PASSWORD)
    carol.goto("/approvals/")
    carol.get_by_role("status").filter(has_text="Live").wait_for(timeout=SHOWN)
    carol.evaluate("window.__notReloaded = true")
    carol.get_by_text("Nothing waits for you.").wait_for()

    refunds: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {}

    def agent() -> None:
        with (
            tether.Client(url=asgi_server.url, agent_key=gated.secret) as client,
            client.run("Refund order A-1", on_behalf_of="rita") as run,
        ):
            arguments = {"amount": 120, "order": "A-1", "customer": "c@example.com"}
            try:
                decision = run.check_tool(
                    "payments-refund",
                    arguments,
                    action="create",
                    reason="The customer was charged twice for order A-1.",
                    preview=PREVIEW,
                    wait_for_approval=60,
                )
                outcome["decision"] = decision
                refunds.append(dict(decision.arguments or arguments))  # the tool body
                # The same approval a second time: refused.
                try:
                    run.check_tool(
                        "payments-refund", arguments, action="create",
                        approval=decision.approval_id,
                    )  # fmt: skip
                except tether.Denied as exc:
                    outcome["replay"] = exc.decision
            except Exception as exc:  # the assertions below say what went wrong
                outcome["error"] = exc

    thread = threading.Thread(target=agent, name="agent")
    thread.start()

    # The request appears in the open inbox without a reload.
    row = carol.locator("#queue tbody tr", has_text="payments-refund.create")
    row.wait_for(timeout=SHOWN)
    assert carol.evaluate("window.__notReloaded") is True
    assert "0 of 2" in row.inner_text()
    shoot(carol, "approval-flow-inbox-arrived")

    # Opened, it shows the diff and the blast radius; carol approves (1 of 2).
    row.get_by_role("link").click()
    carol.locator(".diff-table").first.wait_for()
    assert "/status" in carol.locator(".diff-table").first.inner_text()
    blast = carol.locator("#blast-title").locator("xpath=..")
    assert "120.00 EUR" in blast.inner_text()
    assert "Irreversible" in blast.inner_text()
    shoot(carol, "approval-flow-request")
    carol.get_by_role("button", name="Approve").click()
    carol.get_by_text("Approval recorded (1 of 2)").wait_for()
    assert "decision" not in outcome  # one approval is not enough

    # The agent's owner may not be the second pair of eyes.
    org.owner.role_assignments.create(role="approver", department=org.claims)
    alice = new_page()
    log_in(alice, "alice", PASSWORD)
    alice.goto(carol.url)
    alice.get_by_text("Separation of duties").wait_for()
    assert alice.get_by_role("button", name="Approve").count() == 0

    # A second approver, in another browser, approves: the agent's call returns allow.
    dave = new_page()
    log_in(dave, "dave", PASSWORD)
    dave.goto(carol.url)
    dave.get_by_role("button", name="Approve").click()
    dave.get_by_text("The request is approved").wait_for()
    thread.join(timeout=30)

    assert "error" not in outcome, outcome.get("error")
    decision = outcome["decision"]
    assert decision.disposition == "allow"
    assert "approved" in decision.reasons
    assert refunds == [{"amount": 120, "order": "A-1", "customer": "c@example.com"}]
    assert list(outcome["replay"].reasons) == ["approval_used"]
    shoot(dave, "approval-flow-approved")
