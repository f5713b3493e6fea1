"""Writes for approval gates: opening a request from a gated step, answering it, using it
once, expiring and escalating it, delegating authority, configuring gates.

The decision service (apps/runtime/decisions.py) calls :func:`approval_open` when a step
must be asked and :func:`approval_claim` when an approved step comes back; everything a person
does goes through :func:`approval_answer`. Each change is an audit event in its own
transaction, and once it commits the inbox and the waiting agent are told
(:func:`_announce`): the agent sees the outcome within a second of the click.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record
from apps.common import broadcast
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.registry.constants import RiskClass
from apps.registry.models import Agent, Tool

from . import selectors
from .constants import (
    CRITICAL_APPROVALS_MIN,
    FEEDBACK_MAX,
    INBOX_GROUP,
    ApprovalStatus,
    ExpiryOutcome,
    GateOutcome,
    Verdict,
)
from .gates import Gate, bump_gates
from .models import ActionRisk, ApprovalDelegation, ApprovalRequest, ApprovalVote, RiskGate

logger = logging.getLogger(__name__)

APPROVAL_TARGET = "approval"
# An approved step must come back within this long; after that it needs asking again.
USE_WINDOW_SECONDS = 15 * 60
ANNOUNCE_TIMEOUT_SECONDS = 2.0


def approval_group(approval_id: Any) -> str:
    """The channel group of one request: its waiting agent and its open pages listen there."""
    return f"approvals.request.{str(approval_id).replace('-', '')}"


def _audit(
    approval: ApprovalRequest, actor: Actor, action: str, message: str, **after: Any
) -> None:
    audit_record(
        actor=actor,
        action=f"approval.{action}",
        target_type=APPROVAL_TARGET,
        target_id=str(approval.pk),
        target_repr=f"{approval.tool.slug}.{approval.tool_action} for {approval.agent.slug}",
        after={"status": approval.status, "run": str(approval.run_id), **after},
        message=message,
    )


def _announce(approval_id: Any, event: str) -> None:
    """After the commit: wake the inboxes and whoever waits on this request. Never raises:
    the waiting side also re-reads the row every second (apps/approvals/waiting.py)."""

    def send() -> None:
        try:
            broadcast.group_send(
                [INBOX_GROUP, approval_group(approval_id)],
                {"type": "approval.changed", "approval": str(approval_id), "event": event},
                timeout=ANNOUNCE_TIMEOUT_SECONDS,
            )
        except Exception:
            logger.warning(
                "approvals: could not announce %s of %s", event, approval_id, exc_info=True
            )

    transaction.on_commit(send)


def _notify(approval_id: Any, event: str) -> None:
    """Email and webhooks, by Celery after the commit (apps/approvals/notify.py)."""
    from .notify import notify_on_commit

    notify_on_commit(approval_id, event)


# --- the agent's side: opening and using a request -------------------------------------------------


def approval_open(
    *,
    run: Any,
    tool: Tool | Any,
    tool_action: str,
    arguments: dict[str, Any],
    arguments_sha256: str,
    reason: str,
    preview: dict[str, Any] | None,
    risk_class: str,
    gate: Gate,
    gate_reasoning: str,
    policies: list[str],
) -> ApprovalRequest:
    """The pending request for this exact step of ``run``: the open one if the agent asked
    before (an agent re-asking must not flood the inbox), else a new one, announced."""
    now = timezone.now()
    existing = (
        ApprovalRequest.objects.pending()
        .filter(
            run=run,
            tool_id=tool.pk,
            tool_action=tool_action,
            arguments_sha256=arguments_sha256,
            expires_at__gt=now,
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return existing
    from .blast import blast_radius

    agent: Agent = run.agent
    tool_row = Tool.objects.prefetch_related("data_classes").get(pk=tool.pk)
    approval = ApprovalRequest(
        run=run,
        agent=agent,
        agent_version=run.version.number,
        department_id=agent.department_id,
        team_id=agent.team_id,
        owner_id=agent.owner_id,
        on_behalf_of_id=run.on_behalf_of_id,
        environment=run.environment,
        tool=tool_row,
        tool_action=tool_action,
        arguments=_storable(arguments),
        arguments_sha256=arguments_sha256,
        reason=reason,
        gate_reasoning=gate_reasoning,
        risk_class=risk_class,
        policies=policies,
        preview=preview,
        blast_radius=_storable(
            blast_radius(
                tool=tool_row,
                arguments=arguments,
                environment=run.environment,
                preview=preview,
                granted_tools=set(run.envelope.get("tools", {})),
            ),
        ),
        rollback=_rollback_path(agent, tool_row),
        approvals_required=max(
            gate.approvals_required,
            CRITICAL_APPROVALS_MIN if risk_class == RiskClass.CRITICAL else 1,
        ),
        expires_at=now + timedelta(seconds=gate.expires_after_seconds),
        on_expiry=gate.on_expiry,
        escalate_at=(
            now + timedelta(seconds=gate.escalate_after_seconds)
            if gate.escalate_after_seconds
            else None
        ),
        created_at=now,
    )
    with transaction.atomic():
        approval.save(force_insert=True)
        _audit(
            approval,
            Actor(type="agent", id=str(agent.pk), name=agent.slug),
            "created",
            f"{agent.slug} asks to {tool_row.slug}.{tool_action} ({risk_class})",
            risk_class=risk_class,
            arguments_sha256=arguments_sha256,
        )
        _announce(approval.pk, "created")
        _notify(approval.pk, "created")
    return approval


def _storable(value: Any) -> Any:
    """The arguments as the database can keep them for display: PostgreSQL's jsonb refuses NUL
    characters and lone surrogates, which a tool's arguments may carry. The request still binds
    the hash of the arguments exactly as sent."""
    text = json.dumps(value, ensure_ascii=False, default=str).replace("\\u0000", "\\ufffd")
    return json.loads(text.encode("utf-8", "replace").decode("utf-8"))


def _rollback_path(agent: Agent, tool: Tool) -> dict[str, Any]:
    """How to undo the step: the tool contract first, the agent's registered path second."""
    return {
        "reversible": tool.reversible,
        "tool_hint": tool.rollback_hint,
        "agent_action": agent.rollback_action,
        "agent_contact": agent.rollback_contact,
        "agent_notes": agent.rollback_notes,
    }


def approval_attach_decision(
    *, approval: ApprovalRequest, decision_id: int | None, used: bool
) -> None:
    """Link the decision that asked (or that the approval let through) to the request."""
    if decision_id is None:
        return
    field = "used_decision_id" if used else "ask_decision_id"
    ApprovalRequest.objects.filter(pk=approval.pk, **{f"{field}__isnull": True}).update(
        **{field: decision_id}
    )


def approval_claim(*, approval: ApprovalRequest) -> bool:
    """Use an approved request for its one step: True only for the first caller, and only
    while approved, unused and unexpired. One conditional UPDATE, so two concurrent replays
    of the same approval cannot both pass."""
    now = timezone.now()
    claimed = ApprovalRequest.objects.filter(
        pk=approval.pk, status=ApprovalStatus.APPROVED, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if claimed:
        approval.used_at = now
        with transaction.atomic():
            _audit(approval, Actor.system("decision-service"), "used", "The approved step ran.")
    return bool(claimed)


def approval_of_decision(decision_id: int) -> ApprovalRequest | None:
    return ApprovalRequest.objects.filter(
        Q(ask_decision_id=decision_id) | Q(used_decision_id=decision_id)
    ).first()


def approval_state(approval: ApprovalRequest) -> dict[str, Any]:
    """What the agent is told about its request. ``expired`` is its own outcome: the agent is
    never told "rejected" when nobody answered."""
    approving = [v for v in approval.votes.all() if v.verdict == Verdict.APPROVE]
    return {
        "id": str(approval.pk),
        "status": approval.status,
        "decided": approval.status != ApprovalStatus.PENDING,
        "feedback": approval.feedback,
        "approvals": len(approving),
        "approvals_required": approval.approvals_required,
        "expires_at": approval.expires_at.isoformat().replace("+00:00", "Z"),
        "on_expiry": approval.on_expiry,
        "used": approval.used_at is not None,
        "url": f"/approvals/{approval.pk}/",
    }


# --- the person's side ------------------------------------------------------------------------


def approval_viewed(*, approval: ApprovalRequest, user: User) -> None:
    """Audit that ``user`` opened the request (once per person)."""
    from apps.audit.models import AuditEvent

    seen = AuditEvent.objects.filter(
        action="approval.viewed",
        target_type=APPROVAL_TARGET,
        target_id=str(approval.pk),
        actor_id=str(user.pk),
    ).exists()
    if not seen:
        with transaction.atomic():
            _audit(
                approval, Actor.user(user), "viewed", f"{user.get_username()} opened the request"
            )


def approval_answer(
    *, approval: ApprovalRequest, actor: User, verdict: str, comment: str = ""
) -> ApprovalRequest:
    """One person answers: approve, reject (a reason is required), request changes (the
    agent receives the feedback), or escalate to the second tier.

    Rules: only a pending, unexpired request; only someone with approver authority over the
    agent (their own or delegated); for a critical request, not the agent's owner nor the
    person the run acts for, and two distinct approvers (four eyes). Raises ``NotPermitted``
    or ``Conflict`` with a message a person can act on.
    """
    comment = comment.strip()
    if verdict not in Verdict.values:
        raise ApplicationError(f"Unknown answer {verdict!r}.", details={"verdict": ["Invalid."]})
    if len(comment) > FEEDBACK_MAX:
        raise ApplicationError(
            f"Keep the comment under {FEEDBACK_MAX} characters.", details={"comment": ["Too long."]}
        )
    if verdict in (Verdict.REJECT, Verdict.REQUEST_CHANGES) and not comment:
        what = "why you reject it" if verdict == Verdict.REJECT else "what the agent should change"
        raise ApplicationError(f"Say {what}.", details={"comment": ["Required."]})
    with transaction.atomic():
        locked = (
            ApprovalRequest.objects.select_for_update()
            .select_related("agent", "tool")
            .get(pk=approval.pk)
        )
        if locked.status == ApprovalStatus.PENDING and locked.expires_at <= timezone.now():
            _expire(locked)
            raise Conflict("This request expired before it was answered.")
        if locked.status != ApprovalStatus.PENDING:
            raise Conflict(f"This request is {locked.get_status_display().lower()} already.")
        if locked.votes.filter(approver=actor, verdict=Verdict.APPROVE).exists():
            raise Conflict("You approved this already; it needs another approver.")
        authority = selectors.authority_for(actor, locked)
        block = selectors.answer_block(actor, locked, authority)
        if block:
            raise NotPermitted(block)
        assert authority is not None  # answer_block says why when it is None
        try:
            with transaction.atomic():
                ApprovalVote.objects.create(
                    approval=locked,
                    approver=actor,
                    approver_name=actor.get_username(),
                    acting_for=authority.acting_for,
                    verdict=verdict,
                    comment=comment,
                )
        except IntegrityError:
            raise Conflict("You approved this already; it needs another approver.") from None
        acting = f" (for {authority.acting_for.get_username()})" if authority.acting_for else ""
        event = _apply(locked, verdict, comment)
        approvals = locked.votes.filter(verdict=Verdict.APPROVE).count()
        said = (
            f"approved ({approvals} of {locked.approvals_required})"
            if event == "approval_recorded"
            else event.replace("_", " ")
        )
        _audit(
            locked,
            Actor.user(actor),
            event,
            f"{actor.get_username()}{acting} {said}" + (f": {comment}" if comment else ""),
            verdict=verdict,
            acting_for=authority.acting_for.get_username() if authority.acting_for else None,
            approvals=approvals,
            approvals_required=locked.approvals_required,
        )
        _announce(locked.pk, event)
        if event in ("escalated", "approved", "rejected", "changes_requested"):
            _notify(locked.pk, event)
    return locked


def _apply(approval: ApprovalRequest, verdict: str, comment: str) -> str:
    """The request's new state after one answer; the audit action that says so."""
    now = timezone.now()
    fields = ["status", "decided_at", "feedback"]
    if verdict == Verdict.ESCALATE:
        approval.tier, approval.escalate_at = 2, None
        approval.save(update_fields=["tier", "escalate_at"])
        return "escalated"
    if verdict == Verdict.APPROVE:
        approvals = approval.votes.filter(verdict=Verdict.APPROVE).count()
        if approvals < approval.approvals_required:
            return "approval_recorded"
        approval.status = ApprovalStatus.APPROVED
        approval.expires_at = now + timedelta(seconds=USE_WINDOW_SECONDS)
        fields.append("expires_at")
    elif verdict == Verdict.REJECT:
        approval.status = ApprovalStatus.REJECTED
    else:
        approval.status = ApprovalStatus.CHANGES_REQUESTED
    approval.decided_at, approval.feedback = now, comment
    approval.save(update_fields=fields)
    return str(approval.status)


def bulk_approve(*, approvals: list[ApprovalRequest], actor: User) -> tuple[int, list[str]]:
    """Approve many at once: low-risk requests only; each answered on its own rules.
    Returns (how many approved, why each other one was not)."""
    done, problems = 0, []
    for approval in approvals:
        if approval.risk_class != RiskClass.LOW:
            problems.append(f"{approval.tool.slug}: only low-risk requests are approved in bulk.")
            continue
        try:
            approval_answer(approval=approval, actor=actor, verdict=Verdict.APPROVE)
            done += 1
        except ApplicationError as exc:
            problems.append(f"{approval.tool.slug}: {exc}")
    return done, problems


def approval_cancel(*, approval: ApprovalRequest, actor: Actor, why: str) -> bool:
    """Close a pending request nobody needs any more (its run ended, a kill switch)."""
    with transaction.atomic():
        closed = ApprovalRequest.objects.filter(
            pk=approval.pk, status=ApprovalStatus.PENDING
        ).update(
            status=ApprovalStatus.CANCELLED, decided_at=timezone.now(), feedback=why[:FEEDBACK_MAX]
        )
        if closed:
            approval.refresh_from_db()
            _audit(approval, actor, "cancelled", why)
            _announce(approval.pk, "cancelled")
    return bool(closed)


def approvals_cancel_for_run(*, run: Any, why: str) -> int:
    """Cancel the run's pending requests: a run that ended cannot use them."""
    pending = list(
        ApprovalRequest.objects.pending().filter(run=run).select_related("tool", "agent")
    )
    return sum(approval_cancel(approval=a, actor=Actor.system("runtime"), why=why) for a in pending)


# --- time: expiry and escalation (beat) ---------------------------------------------------------


def _expire(approval: ApprovalRequest) -> bool:
    closed = ApprovalRequest.objects.filter(pk=approval.pk, status=ApprovalStatus.PENDING).update(
        status=ApprovalStatus.EXPIRED, decided_at=timezone.now()
    )
    if closed:
        approval.status = ApprovalStatus.EXPIRED
        outcome = (
            "the step is denied" if approval.on_expiry == ExpiryOutcome.DENY else "the run pauses"
        )
        _audit(
            approval, Actor.system("approvals"), "expired", f"Nobody answered in time: {outcome}."
        )
        _announce(approval.pk, "expired")
    return bool(closed)


def approval_expire_if_due(*, approval: ApprovalRequest, now: datetime | None = None) -> bool:
    """Expire this one request if it is pending past its deadline (the agent asking or
    waiting hears "expired" on time, not at the beat's next tick). True if it expired now."""
    if approval.status != ApprovalStatus.PENDING or approval.expires_at > (now or timezone.now()):
        return False
    with transaction.atomic():
        return _expire(approval)


def approvals_expire(*, now: datetime | None = None) -> int:
    """Expire every pending request past its deadline; each once, however often this runs."""
    now = now or timezone.now()
    due = (
        ApprovalRequest.objects.pending()
        .filter(expires_at__lte=now)
        .select_related("tool", "agent")
    )
    expired = 0
    for approval in due:
        with transaction.atomic():
            expired += _expire(approval)
    return expired


def approvals_escalate(*, now: datetime | None = None) -> int:
    """Raise pending first-tier requests past their escalation time to the second tier
    (organisation-wide approvers and admins are told)."""
    now = now or timezone.now()
    due = (
        ApprovalRequest.objects.pending()
        .filter(tier=1, escalate_at__lte=now, expires_at__gt=now)
        .select_related("tool", "agent")
    )
    escalated = 0
    for approval in due:
        with transaction.atomic():
            moved = ApprovalRequest.objects.filter(
                pk=approval.pk, tier=1, status=ApprovalStatus.PENDING
            ).update(tier=2, escalate_at=None)
            if moved:
                approval.tier = 2
                _audit(
                    approval,
                    Actor.system("approvals"),
                    "escalated",
                    "Unanswered at its deadline: raised to the second tier.",
                )
                _announce(approval.pk, "escalated")
                _notify(approval.pk, "escalated")
                escalated += 1
    return escalated


# --- delegation ---------------------------------------------------------------------------------


def delegation_create(
    *,
    actor: User,
    delegator: User,
    delegate: User,
    starts_at: datetime,
    ends_at: datetime,
    reason: str = "",
) -> ApprovalDelegation:
    """``delegator`` lends their approval authority to ``delegate`` for a period. People
    delegate their own authority; admins may set one up for anyone."""
    if actor.pk != delegator.pk and not selectors.scope_of(actor).is_admin:
        raise NotPermitted("You may delegate only your own approval authority.")
    if delegator.pk == delegate.pk:
        raise ApplicationError("Delegate to someone else.", details={"delegate": ["Same person."]})
    if ends_at <= starts_at:
        raise ApplicationError(
            "The period must end after it starts.", details={"ends_at": ["Before start."]}
        )
    if not selectors.may_approve_anything(delegator):
        raise ApplicationError(f"{delegator.get_username()} holds no approval authority to lend.")
    with transaction.atomic():
        delegation = ApprovalDelegation.objects.create(
            delegator=delegator,
            delegate=delegate,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
        )
        audit_record(
            actor=Actor.user(actor),
            action="approval.delegation.created",
            target_type="approval_delegation",
            target_id=delegation.pk,
            target_repr=str(delegation),
            after={"delegator": delegator.get_username(), "delegate": delegate.get_username(),
                   "starts_at": starts_at, "ends_at": ends_at, "reason": reason},
            message=f"{delegator.get_username()} lends approval authority to {delegate.get_username()}",
        )  # fmt: skip
    return delegation


def delegation_revoke(*, actor: User, delegation: ApprovalDelegation) -> None:
    if (
        actor.pk not in (delegation.delegator_id, delegation.delegate_id)
        and not selectors.scope_of(actor).is_admin
    ):
        raise NotPermitted("Only the two people concerned or an admin may end a delegation.")
    with transaction.atomic():
        if ApprovalDelegation.objects.filter(pk=delegation.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        ):
            audit_record(
                actor=Actor.user(actor), action="approval.delegation.revoked",
                target_type="approval_delegation", target_id=delegation.pk,
                target_repr=str(delegation), message="Delegation ended",
            )  # fmt: skip


# --- configuration --------------------------------------------------------------------------------


def _require_admin(actor: User) -> None:
    if not selectors.scope_of(actor).is_admin:
        raise NotPermitted("Only admins configure approval gates.")


def gate_set(
    *,
    actor: User,
    risk_class: str,
    outcome: str,
    agent: Agent | None = None,
    approvals_required: int = 1,
    expires_after_seconds: int = 3600,
    on_expiry: str = ExpiryOutcome.DENY,
    escalate_after_seconds: int | None = None,
) -> RiskGate:
    """What a risk class does (for everyone, or for one agent). Critical is never allowed
    unasked and needs two approvers at least."""
    _require_admin(actor)
    errors: dict[str, list[str]] = {}
    if risk_class not in RiskClass.values:
        errors["risk_class"] = ["Unknown risk class."]
    if outcome not in GateOutcome.values:
        errors["outcome"] = ["Choose allow, ask or forbid."]
    if risk_class == RiskClass.CRITICAL and outcome == GateOutcome.ALLOW:
        errors["outcome"] = ["Critical actions cannot happen without approval: ask or forbid."]
    if risk_class == RiskClass.CRITICAL and approvals_required < CRITICAL_APPROVALS_MIN:
        errors["approvals_required"] = ["Critical actions need two distinct approvers (four eyes)."]
    if not 1 <= approvals_required <= 5:
        errors["approvals_required"] = ["Between 1 and 5."]
    if not 60 <= expires_after_seconds <= 30 * 86400:
        errors["expires_after_seconds"] = ["Between one minute and 30 days."]
    if (
        escalate_after_seconds is not None
        and not 60 <= escalate_after_seconds < expires_after_seconds
    ):
        errors["escalate_after_seconds"] = ["At least a minute, and before the request expires."]
    if on_expiry not in ExpiryOutcome.values:
        errors["on_expiry"] = ["Choose deny or pause."]
    if errors:
        raise ApplicationError("The gate is not valid.", details=errors)
    with transaction.atomic():
        before = RiskGate.objects.filter(agent=agent, risk_class=risk_class).first()
        gate, _ = RiskGate.objects.update_or_create(
            agent=agent,
            risk_class=risk_class,
            defaults={
                "outcome": outcome,
                "approvals_required": approvals_required,
                "expires_after_seconds": expires_after_seconds,
                "on_expiry": on_expiry,
                "escalate_after_seconds": escalate_after_seconds,
            },
        )
        audit_record(
            actor=Actor.user(actor),
            action="approval.gate.set",
            target_type="risk_gate",
            target_id=gate.pk,
            target_repr=str(gate),
            before=_gate_dict(before) if before else None,
            after=_gate_dict(gate),
            message=f"{risk_class} steps{' of ' + agent.slug if agent else ''}: {outcome}",
        )
        bump_gates()
    return gate


def _gate_dict(gate: RiskGate) -> dict[str, Any]:
    return {
        "outcome": gate.outcome,
        "approvals_required": gate.approvals_required,
        "expires_after_seconds": gate.expires_after_seconds,
        "on_expiry": gate.on_expiry,
        "escalate_after_seconds": gate.escalate_after_seconds,
    }


def gate_clear(*, actor: User, gate: RiskGate) -> None:
    """Drop a gate row: the class goes back to the organisation's gate or the default."""
    _require_admin(actor)
    with transaction.atomic():
        audit_record(
            actor=Actor.user(actor), action="approval.gate.cleared", target_type="risk_gate",
            target_id=gate.pk, target_repr=str(gate), before=_gate_dict(gate),
            message=f"Gate {gate} removed",
        )  # fmt: skip
        gate.delete()
        bump_gates()


def action_risk_set(
    *, actor: User, tool: Tool, action: str, risk_class: str, agent: Agent | None = None
) -> ActionRisk:
    """Map one action of a tool (every action: ``action=""``) to a risk class."""
    _require_admin(actor)
    if risk_class not in RiskClass.values:
        raise ApplicationError("Unknown risk class.", details={"risk_class": ["Invalid."]})
    if action and action not in tool.actions:
        raise ApplicationError(
            f"{tool.slug} has no action {action!r} (it has {', '.join(tool.actions)}).",
            details={"action": ["Unknown."]},
        )
    with transaction.atomic():
        mapping, _ = ActionRisk.objects.update_or_create(
            tool=tool, action=action, agent=agent, defaults={"risk_class": risk_class}
        )
        audit_record(
            actor=Actor.user(actor), action="approval.action_risk.set", target_type="action_risk",
            target_id=mapping.pk, target_repr=str(mapping), after={"risk_class": risk_class},
            message=f"{mapping}" + (f" for {agent.slug}" if agent else ""),
        )  # fmt: skip
        bump_gates()
    return mapping


def action_risk_clear(*, actor: User, mapping: ActionRisk) -> None:
    _require_admin(actor)
    with transaction.atomic():
        audit_record(
            actor=Actor.user(actor), action="approval.action_risk.cleared", target_type="action_risk",
            target_id=mapping.pk, target_repr=str(mapping), message=f"{mapping} removed",
        )  # fmt: skip
        mapping.delete()
        bump_gates()
