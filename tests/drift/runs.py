"""Ended runs written straight to the table: weeks of history in one statement. The drift job
then reads them exactly as it reads runs the runtime recorded."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db.models import F

from apps.registry.models import AgentVersion
from apps.runtime.constants import RunState
from apps.runtime.models import AgentCredential, Run


def ended_runs(
    credential: AgentCredential,
    version: AgentVersion,
    ended: Sequence[datetime],
    outcomes: Sequence[str],
    *,
    seconds: float = 30.0,
    state: str = RunState.FINISHED,
) -> list[Run]:
    """One finished run per ``ended`` moment, with the matching outcome, each ``seconds`` long."""
    runs = [
        Run(
            agent_id=credential.agent_id,
            version=version,
            credential=credential,
            environment=credential.environment,
            task="Triage a claim",
            state=state,
            outcome=outcome,
            envelope={},
            token_lookup=uuid.uuid4().hex[:16],
            token_digest="0" * 64,
            token_expires_at=at,
            ended_at=at,
        )
        for at, outcome in zip(ended, outcomes, strict=True)
    ]
    Run.objects.bulk_create(runs, batch_size=2_000)
    Run.objects.filter(pk__in=[run.pk for run in runs]).update(
        started_at=F("ended_at") - timedelta(seconds=seconds)
    )
    return runs


def spread(start: datetime, end: datetime, count: int) -> list[datetime]:
    """``count`` moments evenly between ``start`` and ``end``."""
    step = (end - start) / count
    return [start + step * i for i in range(count)]


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
