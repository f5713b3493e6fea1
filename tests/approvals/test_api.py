"""The approvers' API: their inbox and their answers, under the console's rules."""

from __future__ import annotations

import pytest

from apps.approvals.constants import ApprovalStatus

from ..clients import api_client

pytestmark = pytest.mark.django_db


def test_the_inbox_lists_what_the_approver_may_answer(gated, org):
    refund = gated.ask(reason="Double charge").approval
    gated.ask(tool="customer-email", action="send")

    answer = api_client(org.approver).get("/api/v1/approvals/inbox/?risk=critical")

    assert answer.status_code == 200
    body = answer.json()
    assert body["count"] == 1
    row = body["results"][0]
    assert (row["id"], row["tool"], row["risk_class"], row["approvals_required"]) == (
        str(refund.pk), "payments-refund", "critical", 2,
    )  # fmt: skip
    assert row["reason"] == "Double charge"
    assert row["url"].endswith(f"/approvals/{refund.pk}/")
    assert api_client(org.finance).get("/api/v1/approvals/inbox/").json()["count"] == 0


def test_answers_through_the_api_follow_the_same_rules(gated, org):
    approval = gated.ask().approval
    url = f"/api/v1/approvals/{approval.pk}/answer/"

    first = api_client(org.approver).post(url, {"verdict": "approve"}, format="json")
    twice = api_client(org.approver).post(url, {"verdict": "approve"}, format="json")
    no_reason = api_client(gated.approver2).post(url, {"verdict": "reject"}, format="json")
    outsider = api_client(org.other_owner).post(url, {"verdict": "approve"}, format="json")
    second = api_client(gated.approver2).post(url, {"verdict": "approve"}, format="json")

    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert twice.status_code == 409
    assert no_reason.status_code == 400
    assert no_reason.json()["error"]["details"] == {"comment": ["Required."]}
    assert outsider.status_code == 404
    assert second.status_code == 200 and second.json()["status"] == ApprovalStatus.APPROVED


def test_hostile_input_is_a_400_with_a_message(gated, org):
    approval = gated.ask().approval
    url = f"/api/v1/approvals/{approval.pk}/answer/"
    client = api_client(org.approver)

    assert client.post(url, {"verdict": "nuke"}, format="json").status_code == 400
    assert (
        client.post(url, {"verdict": "reject", "comment": "x" * 5000}, format="json").status_code
        == 400
    )
    assert client.post(url, {"verdict": "approve", "extra": 1}, format="json").status_code == 400
    assert client.post(url, ["approve"], format="json").status_code == 400
    assert client.get("/api/v1/approvals/inbox/?risk=apocalyptic").status_code == 400
    assert client.get("/api/v1/approvals/inbox/?limit=100000").status_code == 400
