"""The approvals console: inbox, a request's page, answering it, gates and delegations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.approvals import services
from apps.approvals.constants import ApprovalStatus, GateOutcome, Verdict
from apps.approvals.models import ApprovalDelegation, RiskGate
from apps.audit.models import AuditEvent

from ..clients import console_client

pytestmark = pytest.mark.django_db


def test_the_inbox_lists_what_the_approver_may_answer_with_counts_by_risk(gated, org):
    refund = gated.ask(reason="Double charge").approval
    email = gated.ask(tool="customer-email", action="send").approval

    page = console_client(org.approver).get(reverse("approvals:inbox"))

    assert page.status_code == 200
    body = page.content.decode()
    assert str(refund.pk) in body and str(email.pk) in body
    assert page.context["counts"] == {"low": 0, "medium": 0, "high": 1, "critical": 1, "all": 2}
    assert "Double charge" in body


def test_the_owner_does_not_see_their_own_agents_critical_request_in_their_queue(gated, org):
    gated.ask()
    org.owner.role_assignments.create(role="approver", department=org.claims)

    page = console_client(org.owner).get(reverse("approvals:inbox"))

    assert page.context["rows"] == []
    assert "Nothing waits for you" in page.content.decode()


def test_an_approver_of_another_department_sees_nothing_and_gets_404_for_the_request(gated, org):
    approval = gated.ask().approval
    outsider_approver = org.other_owner
    outsider_approver.role_assignments.create(role="approver", department=org.payments)

    inbox = console_client(outsider_approver).get(reverse("approvals:inbox"))
    detail = console_client(outsider_approver).get(reverse("approvals:detail", args=[approval.pk]))
    outsider = console_client(org.outsider).get(reverse("approvals:detail", args=[approval.pk]))

    assert inbox.context["rows"] == []
    assert detail.status_code == 404
    assert outsider.status_code in (403, 404)  # no role: the no-role page, never the request


def test_the_request_page_shows_diff_blast_radius_and_rollback_and_audits_the_view(gated, org):
    preview = {"format": "json", "current": {"status": "charged", "refunded": 0},
               "proposed": {"status": "refunded", "refunded": 120}}  # fmt: skip
    approval = gated.ask(preview=preview).approval
    url = reverse("approvals:detail", args=[approval.pk])

    page = console_client(org.approver).get(url)
    console_client(org.approver).get(url)

    body = page.content.decode()
    assert page.status_code == 200
    assert "/status" in body and "refunded" in body  # the diff's rows
    assert "EUR" in body  # money moved
    assert "Refunds cannot be pulled back" in body  # the rollback path
    assert "Stripe" in body
    assert 'value="approve"' in body
    viewed = AuditEvent.objects.filter(action="approval.viewed", target_id=str(approval.pk))
    assert viewed.count() == 1  # once per person


def test_approving_through_the_page_records_the_vote_and_says_one_more_is_needed(gated, org):
    approval = gated.ask().approval
    url = reverse("approvals:answer", args=[approval.pk])

    first = console_client(org.approver).post(url, {"verdict": "approve"})
    second = console_client(gated.approver2).post(url, {"verdict": "approve"}, follow=True)

    assert first.status_code == 302
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    assert "approved" in second.content.decode().lower()


def test_rejecting_without_a_reason_is_a_400_with_a_message(gated, org):
    approval = gated.ask().approval

    page = console_client(org.approver).post(
        reverse("approvals:answer", args=[approval.pk]), {"verdict": "reject", "comment": ""}
    )

    assert page.status_code == 400
    assert "Say why you reject it." in page.content.decode()
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.PENDING


def test_a_hostile_answer_is_refused_cleanly(gated, org):
    approval = gated.ask().approval
    url = reverse("approvals:answer", args=[approval.pk])
    client = console_client(org.approver)

    unknown = client.post(url, {"verdict": "delete-everything"})
    huge = client.post(url, {"verdict": "reject", "comment": "x" * 100_000})
    not_a_uuid = client.post("/approvals/not-a-uuid/answer/", {"verdict": "approve"})

    assert unknown.status_code == 400 and huge.status_code == 400
    assert not_a_uuid.status_code == 404


def test_the_owner_is_told_why_they_cannot_answer(gated, org):
    approval = gated.ask().approval
    org.owner.role_assignments.create(role="approver", department=org.claims)

    page = console_client(org.owner).get(reverse("approvals:detail", args=[approval.pk]))
    answer = console_client(org.owner).post(
        reverse("approvals:answer", args=[approval.pk]), {"verdict": "approve"}
    )

    assert "Separation of duties" in page.content.decode()
    assert 'value="approve"' not in page.content.decode()
    assert answer.status_code == 400
    assert not approval.votes.exists()


def test_bulk_approval_from_the_inbox_takes_only_low_risk(
    gated, org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.gate_set(actor=org.admin, risk_class="low", outcome=GateOutcome.ASK)
    low = gated.ask(tool="crm-lookup", action="read").approval
    critical = gated.ask().approval

    page = console_client(org.approver).post(
        reverse("approvals:bulk-approve"),
        {"approvals": [str(low.pk), str(critical.pk)]},
        follow=True,
    )

    low.refresh_from_db()
    critical.refresh_from_db()
    assert low.status == ApprovalStatus.APPROVED
    assert critical.status == ApprovalStatus.PENDING
    assert "only low-risk" in page.content.decode()


def test_admins_set_gates_and_others_only_read_them(org):
    url = reverse("approvals:gates")
    data = {"form": "gate", "gate-risk_class": "medium", "gate-outcome": "ask",
            "gate-approvals_required": "1", "gate-expires_after_minutes": "30",
            "gate-on_expiry": "deny"}  # fmt: skip

    assert console_client(org.approver).get(url).status_code == 200
    assert console_client(org.approver).post(url, data).status_code == 404
    saved = console_client(org.admin).post(url, data)
    refused = console_client(org.admin).post(
        url, {**data, "gate-risk_class": "critical", "gate-outcome": "allow"}
    )

    assert saved.status_code == 302
    gate = RiskGate.objects.get(agent=None, risk_class="medium")
    assert (gate.outcome, gate.expires_after_seconds) == ("ask", 1800)
    assert refused.status_code == 400
    assert "cannot happen without approval" in refused.content.decode()
    assert not RiskGate.objects.filter(risk_class="critical").exists()


def test_an_approver_delegates_their_authority_for_a_period(org):
    now = timezone.now()
    page = console_client(org.approver).post(
        reverse("approvals:delegations"),
        {"delegate": org.finance.username,
         "starts_at": now.strftime("%Y-%m-%dT%H:%M"),
         "ends_at": (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"),
         "reason": "Holiday"},
    )  # fmt: skip
    backwards = console_client(org.approver).post(
        reverse("approvals:delegations"),
        {"delegate": org.finance.username,
         "starts_at": now.strftime("%Y-%m-%dT%H:%M"),
         "ends_at": (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")},
    )  # fmt: skip

    assert page.status_code == 302
    delegation = ApprovalDelegation.objects.get()
    assert (delegation.delegator, delegation.delegate) == (org.approver, org.finance)
    assert backwards.status_code == 400
    assert "must end after it starts" in backwards.content.decode()
    assert AuditEvent.objects.filter(action="approval.delegation.created").exists()


def test_the_navigation_counts_what_waits_for_the_approver(gated, org):
    gated.ask()
    gated.ask(tool="customer-email", action="send")

    page = console_client(org.approver).get(reverse("registry:agent-list"))

    assert "2 waiting for you" in page.content.decode()


def test_an_answered_request_can_no_longer_be_answered(gated, org):
    approval = gated.ask(tool="customer-email", action="send").approval
    services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)

    again = console_client(gated.approver2).post(
        reverse("approvals:answer", args=[approval.pk]), {"verdict": "reject", "comment": "late"}
    )

    assert again.status_code == 409
    assert "approved already" in again.content.decode()


def test_removing_a_row_that_is_not_a_number_is_a_404_not_an_error(org):
    client = console_client(org.admin)
    url = reverse("approvals:gates")

    assert client.post(url, {"form": "clear-gate", "id": "abc"}).status_code == 404
    assert client.post(url, {"form": "clear-risk", "id": "9" * 40}).status_code == 404
    assert client.post(url, {"form": "clear-gate", "id": "123"}).status_code == 404
    assert client.post(url, {"form": "mystery"}).status_code == 400
