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
