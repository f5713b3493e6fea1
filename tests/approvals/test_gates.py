"""Gates in the decision path: a critical step runs only against its own approval, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.permissions import forget_scope
from apps.approvals import services
from apps.approvals.constants import ApprovalStatus, ExpiryOutcome, GateOutcome, Verdict
from apps.approvals.models import ApprovalRequest
from apps.audit.models import AuditEvent
from apps.common.errors import Conflict, NotPermitted
from apps.runtime import services as runtime

pytestmark = pytest.mark.django_db


def approve_twice(gated, org, approval):
    services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)
    return services.approval_answer(
        approval=approval, actor=gated.approver2, verdict=Verdict.APPROVE
    )


def test_a_critical_step_asks_and_opens_a_request_with_what_an_approver_needs(gated, org):
    decision = gated.ask(reason="Customer was double charged.")

    assert decision.disposition == "ask"
    assert decision.reasons == ["approval_required"]
    approval = decision.approval
    stored = ApprovalRequest.objects.get(pk=approval.pk)
    assert stored.ask_decision_id == decision.pk
    assert stored.status == ApprovalStatus.PENDING
    assert stored.risk_class == "critical"
    assert stored.approvals_required == 2
    assert stored.reason == "Customer was double charged."
    assert stored.owner == org.owner and stored.on_behalf_of == gated.requester
    assert "120" in stored.blast_radius["summary"] and "EUR" in stored.blast_radius["summary"]
    assert stored.blast_radius["reversible"] is False
    assert stored.rollback == {
        "reversible": False,
        "tool_hint": "Refunds cannot be pulled back; issue a charge instead.",
        "agent_action": "Reverse the ledger entry from the refunds console.",
        "agent_contact": "payments-oncall@example.com",
        "agent_notes": "",
    }
    assert AuditEvent.objects.filter(action="approval.created", target_id=str(stored.pk)).exists()


def test_asking_again_for_the_same_step_reuses_the_pending_request(gated):
    first = gated.ask().approval
    second = gated.ask().approval
    other = gated.ask(arguments={"amount": 99}).approval

    assert first.pk == second.pk
    assert other.pk != first.pk
    assert ApprovalRequest.objects.count() == 2


def test_two_distinct_approvers_then_the_step_is_allowed_once(gated, org):
    approval = gated.ask().approval

    services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)
    assert gated.ask(approval=str(approval.pk)).disposition == "ask"  # one of two
    with pytest.raises(Conflict, match="another approver"):
        services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)
    services.approval_answer(approval=approval, actor=gated.approver2, verdict=Verdict.APPROVE)

    allowed = gated.ask(approval=str(approval.pk))
    assert allowed.disposition == "allow"
    assert allowed.reasons == ["allowed", "approved"]
    approval.refresh_from_db()
    assert approval.used_at is not None and approval.used_decision_id == allowed.pk

    replay = gated.ask(approval=str(approval.pk))
    assert replay.disposition == "deny"
    assert replay.reasons == ["approval_used"]


def test_an_altered_request_is_denied_against_the_approval(gated, org):
    approval = gated.ask().approval
    approve_twice(gated, org, approval)

    altered = gated.ask(approval=str(approval.pk), arguments={"amount": 12000, "order": "A-1"})
    other_action = gated.ask(tool="customer-email", action="send", approval=str(approval.pk))

    assert altered.disposition == "deny" and altered.reasons == ["approval_mismatch"]
    assert other_action.reasons == ["approval_mismatch"]
    assert gated.ask(approval=str(approval.pk)).disposition == "allow"  # still good for its step


def test_an_approval_of_another_run_is_not_this_runs(gated, org):
    approval = gated.ask().approval
    approve_twice(gated, org, approval)
    credential = gated.run.credential
    other_run, _ = runtime.run_start(credential=credential, task="Another refund")
    gated.run = other_run

    answer = gated.ask(approval=str(approval.pk))

    assert answer.disposition == "deny" and answer.reasons == ["approval_invalid"]


def test_an_approved_step_that_comes_back_without_the_id_uses_it(gated, org):
    approval = gated.ask().approval
    approve_twice(gated, org, approval)

    assert gated.ask().disposition == "allow"
    # Used up: the same step now asks afresh.
    again = gated.ask()
    assert again.disposition == "ask" and again.approval.pk != approval.pk


def test_the_owner_and_the_person_the_run_acts_for_cannot_approve_critical(gated, org):
    approval = gated.ask().approval
    org.owner.role_assignments.create(role="approver", department=org.claims)
    gated.requester.role_assignments.create(role="approver", department=org.claims)
    forget_scope(org.owner)
    forget_scope(gated.requester)

    with pytest.raises(NotPermitted, match="owner"):
        services.approval_answer(approval=approval, actor=org.owner, verdict=Verdict.APPROVE)
    with pytest.raises(NotPermitted, match="acts for"):
        services.approval_answer(approval=approval, actor=gated.requester, verdict=Verdict.APPROVE)
    assert not approval.votes.exists()


def test_someone_without_approver_authority_cannot_answer(gated, org):
    approval = gated.ask().approval

    with pytest.raises(NotPermitted, match="no approver role"):
        services.approval_answer(approval=approval, actor=org.finance, verdict=Verdict.APPROVE)
    with pytest.raises(NotPermitted):
        services.approval_answer(
            approval=approval, actor=org.other_owner, verdict=Verdict.REJECT, comment="no"
        )


def test_a_rejection_needs_a_reason_and_reaches_the_agent(gated, org):
    approval = gated.ask().approval
    with pytest.raises(Exception, match="why you reject"):
        services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.REJECT)

    services.approval_answer(
        approval=approval, actor=org.approver, verdict=Verdict.REJECT, comment="Already refunded."
    )
    answer = gated.ask(approval=str(approval.pk))

    assert answer.disposition == "deny"
    assert answer.reasons == ["approval_rejected"]
    assert "Already refunded." in answer.reasoning


def test_requested_changes_reach_the_agent_as_feedback(gated, org):
    approval = gated.ask().approval
    services.approval_answer(
        approval=approval,
        actor=org.approver,
        verdict=Verdict.REQUEST_CHANGES,
        comment="Refund 100, not 120.",
    )

    answer = gated.ask(approval=str(approval.pk))

    assert answer.reasons == ["approval_changes_requested"]
    assert "Refund 100, not 120." in answer.reasoning


def test_an_expired_request_reports_expired_never_rejected(gated, org):
    approval = gated.ask().approval
    ApprovalRequest.objects.filter(pk=approval.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert services.approvals_expire() == 1
    assert services.approvals_expire() == 0  # once
    answer = gated.ask(approval=str(approval.pk))

    assert answer.disposition == "deny"
    assert answer.reasons == ["approval_expired"]
    assert "reject" not in answer.reasoning.lower()
    with pytest.raises(Conflict, match="expired"):
        services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)
    assert (
        AuditEvent.objects.filter(action="approval.expired", target_id=str(approval.pk)).count()
        == 1
    )


def test_a_gate_that_pauses_at_expiry_defers_the_step(
    gated, org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.gate_set(
            actor=org.admin,
            risk_class="high",
            outcome=GateOutcome.ASK,
            on_expiry=ExpiryOutcome.PAUSE,
        )
    approval = gated.ask(tool="customer-email", action="send").approval
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now())

    answer = gated.ask(tool="customer-email", action="send", approval=str(approval.pk))

    assert answer.disposition == "defer"
    assert answer.reasons == ["approval_expired"]
    assert answer.retry_after_seconds == 60


def test_high_risk_asks_when_the_organisations_gate_says_so_with_one_approver(gated, org):
    decision = gated.ask(tool="customer-email", action="send")
    assert decision.disposition == "ask"
    approval = decision.approval
    assert approval.approvals_required == 1
    assert "the organisation's gate" in approval.gate_reasoning

    services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)

    assert (
        gated.ask(tool="customer-email", action="send", approval=str(approval.pk)).disposition
        == "allow"
    )


def test_without_a_gate_high_risk_follows_the_autonomy_level(
    gated, org, django_capture_on_commit_callbacks
):
    from apps.approvals.models import RiskGate
    from apps.registry import services as registry

    with django_capture_on_commit_callbacks(execute=True):
        services.gate_clear(actor=org.admin, gate=RiskGate.objects.get(risk_class="high"))
    assert gated.ask(tool="customer-email", action="send").disposition == "allow"  # L3

    registry.agent_update(actor=org.owner, agent=gated.agent, data={"autonomy_level": 2})
    gated.run, _ = runtime.run_start(credential=gated.run.credential, task="Refund, supervised")
    asked = gated.ask(tool="customer-email", action="send", arguments={"to": "x@example.com"})
    assert asked.disposition == "ask"
    assert "L2" in asked.approval.gate_reasoning


def test_gates_set_what_a_class_does_for_everyone_or_one_agent(
    gated, org, django_capture_on_commit_callbacks
):
    assert gated.ask(tool="crm-lookup", action="read").disposition == "allow"

    with django_capture_on_commit_callbacks(execute=True):
        services.gate_set(
            actor=org.admin, risk_class="low", outcome=GateOutcome.ASK, agent=gated.agent
        )
    assert gated.ask(tool="crm-lookup", action="read").disposition == "ask"

    with django_capture_on_commit_callbacks(execute=True):
        services.gate_set(actor=org.admin, risk_class="high", outcome=GateOutcome.FORBID)
    forbidden = gated.ask(tool="customer-email", action="send")
    assert forbidden.disposition == "deny" and forbidden.reasons == ["risk_forbidden"]


def test_critical_can_never_be_set_to_allow_or_to_one_approver(org):
    with pytest.raises(Exception, match="not valid") as info:
        services.gate_set(actor=org.admin, risk_class="critical", outcome=GateOutcome.ALLOW)
    assert "outcome" in info.value.details
    with pytest.raises(Exception, match="not valid") as info:
        services.gate_set(
            actor=org.admin, risk_class="critical", outcome=GateOutcome.ASK, approvals_required=1
        )
    assert "approvals_required" in info.value.details
    with pytest.raises(NotPermitted):
        services.gate_set(actor=org.owner, risk_class="low", outcome=GateOutcome.ASK)


def test_a_mapping_makes_one_action_of_a_tool_critical(gated, org):
    services.action_risk_set(
        actor=org.admin, tool=gated.lookup, action="read", risk_class="critical"
    )

    decision = gated.ask(tool="crm-lookup", action="read", arguments={})

    assert decision.disposition == "ask"
    assert decision.approval.risk_class == "critical"
    assert decision.approval.approvals_required == 2


def test_delegated_authority_answers_for_the_delegator(gated, org):
    stand_in = org.finance  # no approver role of their own
    services.delegation_create(
        actor=org.approver,
        delegator=org.approver,
        delegate=stand_in,
        starts_at=timezone.now() - timedelta(minutes=1),
        ends_at=timezone.now() + timedelta(days=1),
        reason="Holiday",
    )
    approval = gated.ask(tool="customer-email", action="send").approval

    services.approval_answer(approval=approval, actor=stand_in, verdict=Verdict.APPROVE)

    vote = approval.votes.get()
    assert vote.approver == stand_in and vote.acting_for == org.approver
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED


def test_an_unanswered_request_escalates_to_the_second_tier_once(gated):
    approval = gated.ask().approval
    ApprovalRequest.objects.filter(pk=approval.pk).update(escalate_at=timezone.now())

    assert services.approvals_escalate() == 1
    assert services.approvals_escalate() == 0
    approval.refresh_from_db()
    assert approval.tier == 2 and approval.status == ApprovalStatus.PENDING


def test_a_run_that_ends_cancels_its_pending_requests(gated):
    approval = gated.ask().approval

    runtime.run_finish(run=gated.run, state="finished")

    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.CANCELLED
    assert AuditEvent.objects.filter(
        action="approval.cancelled", target_id=str(approval.pk)
    ).exists()


def test_bulk_approve_takes_low_risk_only(gated, org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.gate_set(actor=org.admin, risk_class="low", outcome=GateOutcome.ASK)
    low = gated.ask(tool="crm-lookup", action="read").approval
    critical = gated.ask().approval

    done, problems = services.bulk_approve(approvals=[low, critical], actor=org.approver)

    assert done == 1
    assert problems == ["payments-refund: only low-risk requests are approved in bulk."]
    low.refresh_from_db()
    critical.refresh_from_db()
    assert low.status == ApprovalStatus.APPROVED and critical.status == ApprovalStatus.PENDING


def test_approval_events_join_the_runs_timeline(gated, org):
    from apps.traces.selectors import run_events

    approval = gated.ask().approval
    approve_twice(gated, org, approval)

    actions = [e.action for e in run_events(run=gated.run, limit=100)]

    assert "approval.created" in actions
    assert actions.count("approval.approval_recorded") == 1
    assert "approval.approved" in actions


def test_the_incident_report_lists_the_runs_approvals_and_proves_their_events(gated, org):
    from apps.traces.incident import incident_report, report_json

    approval = gated.ask().approval
    approve_twice(gated, org, approval)
    assert gated.ask(approval=str(approval.pk)).disposition == "allow"

    report = report_json(incident_report(user=org.admin, run=gated.run))

    actions = [a["action"] for a in report["approvals"]]
    assert actions[0] == "approval.created"
    assert {"approval.approved", "approval.used"} <= set(actions)
    assert [a["by"] for a in report["approvals"] if a["action"] != "approval.created"][:2] == [
        "carol",
        "dave",
    ]
    assert report["proof"]["proven"] is True


def test_arguments_the_database_cannot_store_as_sent_still_make_a_request(gated, org):
    arguments = {"amount": 5, "order": "A-\x00-1", "customer": "bad \ud800 surrogate"}

    decision = gated.ask(arguments=arguments)

    assert decision.disposition == "ask"
    stored = ApprovalRequest.objects.get(pk=decision.approval.pk)
    assert stored.arguments["order"] == "A-\ufffd-1"
    approve_twice(gated, org, stored)
    assert gated.ask(arguments=arguments, approval=str(stored.pk)).disposition == "allow"
