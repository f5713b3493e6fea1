"""Ended runs written straight to the table (the demo's writer): weeks of history in one
statement. The drift job then reads them exactly as it reads runs the runtime recorded."""

from __future__ import annotations

from datetime import timedelta

from apps.drift.demo import ended_runs, spread

__all__ = ["approvals", "claims_approver", "drift_after_change", "ended_runs", "spread"]


def approvals(count: int, approved_per_20: int) -> list[str]:
    """Outcomes in a fixed pattern: ``approved_per_20`` of every 20 runs approved."""
    return ["approved" if i % 20 < approved_per_20 else "rejected" for i in range(count)]


def drift_after_change(org, agent, credential, *, approved_per_20: int = 12):
    """A baseline of 400 runs at 85 % approved over the past four days, then a knowledge-base
    change and 300 runs of the new version at ``approved_per_20`` in 20; one drift cycle.
    Returns (old version, new version, the moment of the cycle)."""
    from django.utils import timezone

    from apps.drift.services import drift_cycle
    from apps.registry import services as registry

    now = timezone.now()
    old = agent.versions.order_by("-number").first()
    ended_runs(credential, old, spread(now - timedelta(days=4), now, 400), approvals(400, 17))
    drift_cycle(now=now + timedelta(minutes=2))
    registry.agent_update(
        actor=org.owner, agent=agent, data={"knowledge_base_version": "kb-2026-03"},
        summary="Knowledge base refresh",
    )  # fmt: skip
    new = agent.versions.order_by("-number").first()
    later = now + timedelta(hours=6)
    ended_runs(
        credential, new, spread(now + timedelta(minutes=5), later, 300),
        approvals(300, approved_per_20),
    )  # fmt: skip
    drift_cycle(now=later + timedelta(minutes=2))
    return old, new, later + timedelta(minutes=2)


def claims_approver(org):
    """The scenario's agent: a claims approver in dev and prod on knowledge base kb-2026-01,
    and its prod credential."""
    from apps.registry import services as registry
    from apps.runtime import services as runtime

    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims approver", "slug": "claims-approver", "mission": "Approve claims.",
            "department": org.claims, "environments": ["dev", "prod"], "status": "active",
            "knowledge_base_version": "kb-2026-01",
        },
    )  # fmt: skip
    credential, _ = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="prod worker"
    )
    return agent, credential
