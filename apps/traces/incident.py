"""The incident report of one run: everything an auditor needs, in one self-contained document.

The report gathers the run's timeline (spans, decisions, run events), every decision with its
reasons and the policies that fired, approvals, costs, the versions in force (the agent's
version and the admin policies' versions when the run started) and the **chain proof** of its
records:

* each audit event about the run, with its place in the audit hash chain (``seq``,
  ``prev_hash``, ``hash``), recomputed now, and linked to the event before it;
* each decision's own hash (SHA-256 of its canonical JSON, as sealed), and the sealed blocks
  that hold the run's decisions, recomputed now from the decision rows, each with the audit
  event that anchors it in the chain;
* the chain head when the report was made and the last full verification.

The same data renders as JSON (``report_json``) and as one HTML file with no external assets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Sum
from django.utils import timezone

from apps.audit.chain import canonical_record, format_time, record_hash
from apps.audit.models import AuditEvent, AuditVerification
from apps.audit.selectors import chain_head
from apps.audit.services import Actor, audit_record
from apps.policy.models import PolicyVersion
from apps.runtime.models import BudgetLedgerEntry, Decision, DecisionSeal, Run
from apps.runtime.sealing import (
    SEALED_ACTION,
    SEALED_FIELDS,
    canonical_decision,
    chain_digest,
    decisions_rows,
)

from . import selectors
from .constants import TIMELINE_API_SPANS_MAX
from .selectors import RUN_TARGET
from .timeline import Timeline

REPORT_FORMAT = "tether.incident-report/1"
APPROVAL_PREFIX = "approval."
KILL_PREFIX = "killswitch."
# A run has a handful of events of its own; each approval request adds a few more.
RUN_EVENTS_MAX = 10_000


@dataclass
class EventProof:
    """An audit event's link in the chain, recomputed when the report was made."""

    event: AuditEvent
    recomputed: str
    previous_hash: str | None  # the hash of the event before it (seq - 1), as stored

    @property
    def ok(self) -> bool:
        linked = self.previous_hash is None or self.previous_hash == self.event.prev_hash
        return self.recomputed == self.event.hash and linked


@dataclass
class SealProof:
    seal: DecisionSeal
    anchor: AuditEvent | None
    recomputed: str
    count: int

    @property
    def ok(self) -> bool:
        return (
            self.anchor is not None
            and self.recomputed == self.seal.digest
            and self.count == self.seal.count
            and (self.anchor.after or {}).get("digest") == self.seal.digest
        )


@dataclass
class IncidentReport:
    run: Run
    generated_at: datetime
    generated_by: str
    timeline: Timeline
    decisions: list[Decision]
    decision_hashes: dict[int, str]
    approvals: list[AuditEvent]
    kills: list[dict[str, Any]]  # the kill switches that stopped the run (kill_json)
    kill_events: list[AuditEvent]
    spend: list[dict[str, Any]]
    policy_versions: list[PolicyVersion]
    event_proofs: list[EventProof]
    seal_proofs: list[SealProof]
    unsealed: list[int]
    head: tuple[int, int | None, str]
    last_verification: AuditVerification | None
    problems: list[str] = field(default_factory=list)

    @property
    def proven(self) -> bool:
        return not self.problems


def _event_proofs(events: list[AuditEvent]) -> list[EventProof]:
    previous = dict(
        AuditEvent.objects.filter(seq__in=[e.seq - 1 for e in events]).values_list("seq", "hash")
    )
    return [
        EventProof(
            event=e,
            recomputed=record_hash(canonical_record(e)),
            previous_hash=previous.get(e.seq - 1),
        )
        for e in events
    ]


def _seal_proofs(decision_ids: list[int]) -> tuple[list[SealProof], list[int]]:
    """The sealed blocks holding these decisions, each recomputed; the ids not sealed yet."""
    if not decision_ids:
        return [], []
    seals = list(
        DecisionSeal.objects.filter(
            last_decision_id__gte=min(decision_ids), first_decision_id__lte=max(decision_ids)
        ).order_by("id")
    )
    # Each decision's block, once: the blocks that hold one are the ones to prove.
    holder = {
        d: s.pk
        for d in decision_ids
        for s in seals
        if s.first_decision_id <= d <= s.last_decision_id
    }
    holding = set(holder.values())
    covering = [s for s in seals if s.pk in holding]
    anchors = {
        int(e.target_id): e
        for e in AuditEvent.objects.filter(
            action=SEALED_ACTION, target_id__in=[str(s.pk) for s in covering]
        )
    }
    proofs = []
    for seal in covering:
        rows = decisions_rows(seal.first_decision_id, seal.last_decision_id)
        digest, count = chain_digest(seal.prev_digest, rows)
        proofs.append(SealProof(seal, anchors.get(seal.pk), digest, count))
    return proofs, [d for d in decision_ids if d not in holder]


def incident_report(*, user: Any, run: Run) -> IncidentReport:
    """Build the report of ``run`` (from :func:`selectors.run_get` for ``user``) and audit that
    it was made: an incident report is an export of the run's records."""
    now = timezone.now()
    timeline = selectors.run_timeline(user=user, run=run, full=True, now=now)
    decisions = list(run.decisions.order_by("id")[:TIMELINE_API_SPANS_MAX])
    decision_hashes = {
        d.pk: hashlib.sha256(
            canonical_decision({name: getattr(d, name) for name in SEALED_FIELDS})
        ).hexdigest()
        for d in decisions
    }
    # The run's own events and those of its approval requests (selectors.run_events).
    run_events = sorted(selectors.run_events(run=run, limit=RUN_EVENTS_MAX), key=lambda e: e.seq)
    approvals = [e for e in run_events if e.action.startswith(APPROVAL_PREFIX)]
    kill_events = [e for e in run_events if e.action.startswith(KILL_PREFIX)]
    kills = [
        kill_json(k)
        for k in run.killed_by.select_related("trigger_rule")
        .prefetch_related("safe_states__agent")
        .order_by("engaged_at")
    ]
    seal_proofs, unsealed = _seal_proofs([d.pk for d in decisions])
    anchors = [p.anchor for p in seal_proofs if p.anchor is not None]
    event_proofs = _event_proofs(run_events + anchors)
    spend = [
        dict(row)
        for row in BudgetLedgerEntry.objects.filter(decision__run=run)
        .values("budget__name", "budget__kind")
        .annotate(amount=Sum("amount"))
        .order_by("budget__name")
    ]
    policy_versions = _policies_in_force(run.started_at)
    report = IncidentReport(
        run=run,
        generated_at=now,
        generated_by=user.get_username(),
        timeline=timeline,
        decisions=decisions,
        decision_hashes=decision_hashes,
        approvals=approvals,
        kills=kills,
        kill_events=kill_events,
        spend=spend,
        policy_versions=policy_versions,
        event_proofs=event_proofs,
        seal_proofs=seal_proofs,
        unsealed=unsealed,
        head=chain_head(),
        last_verification=AuditVerification.objects.order_by("-id").first(),
    )
    report.problems = [
        f"audit event {p.event.seq} does not match its hash or link"
        for p in event_proofs
        if not p.ok
    ] + [f"decision seal {p.seal.pk} does not match its decisions" for p in seal_proofs if not p.ok]
    audit_record(
        actor=Actor.user(user),
        action="traces.incident_report.generated",
        target_type=RUN_TARGET,
        target_id=str(run.pk),
        target_repr=f"{run.agent.slug} run {str(run.pk)[:8]}",
        after={"proven": report.proven, "decisions": len(decisions)},
    )
    return report


def kill_json(kill: Any) -> dict[str, Any]:
    """A kill switch as the report states it: who pressed it and why, what it stopped, what
    the agents' safe-state actions answered (``kill`` has ``safe_states`` prefetched)."""
    return {
        "id": kill.pk,
        "scope": kill.scope,
        "target": kill.target_name,
        "reason": kill.reason,
        "engaged_by": kill.engaged_by_name,
        "automatic": kill.automatic,
        "trigger": kill.trigger or None,
        "engaged_at": _time(kill.engaged_at),
        "released_at": _time(kill.released_at),
        "released_by": kill.released_by_name or None,
        "release_reason": kill.release_reason or None,
        "runs_killed": kill.runs_killed,
        "approvals_cancelled": kill.approvals_cancelled,
        "frozen_stores": kill.frozen_stores,
        "memory_reads": kill.memory_reads,
        "safe_states": [
            {
                "agent": s.agent.slug,
                "status": s.status,
                "http_status": s.http_status,
                "attempts": s.attempts,
                "error": s.last_error or None,
                "finished_at": _time(s.finished_at),
            }
            for s in kill.safe_states.all()
        ],
    }


def _policies_in_force(moment: datetime) -> list[PolicyVersion]:
    """Each admin policy's newest version written before ``moment``."""
    versions = (
        PolicyVersion.objects.filter(created_at__lte=moment)
        .select_related("policy")
        .order_by("policy_id", "-number")
    )
    newest: dict[int, PolicyVersion] = {}
    for version in versions:
        newest.setdefault(version.policy_id, version)
    return sorted(newest.values(), key=lambda v: v.policy.slug)


# --- JSON ------------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None


def _money(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


def report_json(report: IncidentReport) -> dict[str, Any]:
    run, totals = report.run, report.timeline.totals
    return {
        "format": REPORT_FORMAT,
        "generated_at": _time(report.generated_at),
        "generated_by": report.generated_by,
        "run": {
            "id": str(run.pk),
            "agent": run.agent.slug,
            "agent_name": run.agent.name,
            "owner": run.agent.owner.get_username() if run.agent.owner else None,
            "department": run.agent.department.slug if run.agent.department else None,
            "environment": run.environment,
            "task": run.task,
            "state": run.state,
            "outcome": run.outcome,
            "on_behalf_of": run.on_behalf_of.get_username() if run.on_behalf_of else None,
            "parent_run": str(run.parent_id) if run.parent_id else None,
            "started_at": _time(run.started_at),
            "ended_at": _time(run.ended_at),
        },
        "versions": {
            "agent_version": run.version.number,
            "agent_snapshot_hash": run.version.snapshot_hash,
            "policies": [
                {"policy": v.policy.slug, "version": v.number, "author": v.author_name}
                for v in report.policy_versions
            ],
        },
        "costs": {
            "input_tokens": totals.input_tokens if totals else 0,
            "output_tokens": totals.output_tokens if totals else 0,
            "cost_usd": _money(totals.cost_usd) if totals else None,
            "budgets": [
                {"budget": s["budget__name"], "kind": s["budget__kind"], "used": str(s["amount"])}
                for s in report.spend
            ],
        },
        "timeline": [
            {
                "step": step.number,
                "type": step.type,
                "kind": step.kind,
                "phase": step.phase,
                "label": step.label,
                "start": _time(step.start),
                "end": _time(step.end),
                "detail": step.detail,
                "error": step.error,
                "depth": step.depth,
            }
            for step in report.timeline.steps
        ],
        "decisions": [
            {
                "id": d.pk,
                "at": _time(d.created_at),
                "action": d.action,
                "target": d.target,
                "tool_action": d.tool_action,
                "disposition": d.disposition,
                "reasons": d.reasons,
                "reasoning": d.reasoning,
                "policies": d.policies,
                "budgets": d.budgets,
                "arguments_sha256": d.arguments_sha256,
                "sha256": report.decision_hashes.get(d.pk),
            }
            for d in report.decisions
        ],
        "approvals": [
            {"seq": e.seq, "at": _time(e.occurred_at), "action": e.action, "by": e.actor_name}
            for e in report.approvals
        ],
        "kill_switch": {
            "kills": report.kills,
            "events": [
                {"seq": e.seq, "at": _time(e.occurred_at), "action": e.action, "by": e.actor_name}
                for e in report.kill_events
            ],
        },
        "proof": {
            "proven": report.proven,
            "problems": report.problems,
            "audit_head": {"seq": report.head[0], "hash": report.head[2]},
            "last_verification": _verification_json(report.last_verification),
            "audit_events": [
                {
                    "seq": p.event.seq,
                    "action": p.event.action,
                    "prev_hash": p.event.prev_hash,
                    "hash": p.event.hash,
                    "recomputed": p.recomputed,
                    "ok": p.ok,
                }
                for p in report.event_proofs
            ],
            "decision_seals": [
                {
                    "seal": p.seal.pk,
                    "first_decision_id": p.seal.first_decision_id,
                    "last_decision_id": p.seal.last_decision_id,
                    "count": p.seal.count,
                    "prev_digest": p.seal.prev_digest,
                    "digest": p.seal.digest,
                    "recomputed": p.recomputed,
                    "anchor_seq": p.anchor.seq if p.anchor else None,
                    "anchor_hash": p.anchor.hash if p.anchor else None,
                    "ok": p.ok,
                }
                for p in report.seal_proofs
            ],
            "unsealed_decisions": report.unsealed,
        },
    }


def _verification_json(verification: AuditVerification | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    return {
        "at": _time(verification.finished_at),
        "by": verification.actor_name,
        "ok": verification.ok,
        "events_checked": verification.events_checked,
    }
