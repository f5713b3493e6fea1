"""A drift to look at in the embedded demo: the claims adjudicator approved ~85% of claims for
three weeks; ten hours ago a knowledge-base refresh made a new version, and it approves ~93%.
The owner pinned those weeks as the baseline; the drift job then runs as it would every cycle:
the new version is compared with it, and an alert names the refresh. Loaded once.

Runs are written straight to the table (weeks of history in one statement); the versions are
made by the registry's own service, then dated back to when the story says they happened.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.utils import timezone

from apps.audit.services import Actor
from apps.registry import services as registry
from apps.registry.constants import AgentStatus
from apps.registry.models import Agent, AgentVersion
from apps.runtime import services as runtime
from apps.runtime.constants import RunState
from apps.runtime.models import AgentCredential, Run

from .models import RunMetric, RunSample
from .services import baseline_pin, drift_cycle

DEMO_AGENT = "claims-adjudicator"
HISTORY_DAYS = 21
CHANGE_HOURS_AGO = 10


def ended_runs(
    credential: AgentCredential,
    version: AgentVersion,
    ended: Sequence[datetime],
    outcomes: Sequence[str],
    *,
    seconds: Sequence[float] | float = 30.0,
    task: str = "Adjudicate a claim",
) -> list[Run]:
    """One ended run per ``ended`` moment with the matching outcome (``failed`` for a failed
    run), each lasting ``seconds``."""
    durations = [seconds] * len(ended) if isinstance(seconds, int | float) else list(seconds)
    runs = [
        Run(
            agent_id=credential.agent_id, version=version, credential=credential,
            environment=credential.environment, task=task,
            state=RunState.FAILED if outcome == "failed" else RunState.FINISHED,
            outcome="" if outcome == "failed" else outcome, envelope={},
            token_lookup=uuid.uuid4().hex[:16], token_digest="0" * 64, token_expires_at=at,
            ended_at=at,
        )
        for at, outcome in zip(ended, outcomes, strict=True)
    ]  # fmt: skip
    Run.objects.bulk_create(runs, batch_size=2_000)
    by_length: dict[float, list[Any]] = {}
    for run, duration in zip(runs, durations, strict=True):
        by_length.setdefault(round(duration, 1), []).append(run.pk)
    for duration, ids in by_length.items():  # auto_now_add set started_at to now
        Run.objects.filter(pk__in=ids).update(
            started_at=F("ended_at") - timedelta(seconds=duration)
        )
    return runs


def spread(start: datetime, end: datetime, count: int) -> list[datetime]:
    """``count`` moments evenly between ``start`` and ``end``."""
    step = (end - start) / count
    return [start + step * i for i in range(count)]


def _outcomes(rng: random.Random, count: int, approved: float) -> list[str]:
    return [
        "approved" if r < approved else "failed" if r > 0.985 else "rejected"
        for r in (rng.random() for _ in range(count))
    ]


def _metrics(rng: random.Random, runs: list[Run]) -> None:
    RunMetric.objects.bulk_create(
        [
            RunMetric(run_id=run.pk, name="claim_amount", value=round(rng.lognormvariate(7, 0.6), 2),
                      recorded_at=run.ended_at or timezone.now())
            for run in runs
        ],
        batch_size=2_000,
    )  # fmt: skip


def _date_back(version: AgentVersion, moment: datetime) -> None:
    AgentVersion.objects.filter(pk=version.pk).update(created_at=moment)


def demo_drift_load(*, actor: Any, seed: int = 8) -> int:
    """The story above for the demo claims adjudicator; how many runs it wrote (0 when the
    agent is missing, does not run in prod, or has drift data already)."""
    agent = Agent.objects.filter(slug=DEMO_AGENT, status=AgentStatus.ACTIVE).first()
    if agent is None or "prod" not in agent.environments:
        return 0
    if RunSample.objects.filter(agent_id=agent.pk).exists():
        return 0
    rng = random.Random(seed)
    now = timezone.now()
    credential = AgentCredential.objects.filter(
        agent=agent, environment="prod", revoked_at__isnull=True
    ).first()
    if credential is None:
        credential, _ = runtime.credential_issue(
            actor=actor, agent=agent, environment="prod", name="demo worker"
        )
    start, change = now - timedelta(days=HISTORY_DAYS), now - timedelta(hours=CHANGE_HOURS_AGO)
    registry.agent_update(
        actor=actor, agent=agent, data={"knowledge_base_version": "claims-kb-2026-10"},
        summary="October policy pack",
    )  # fmt: skip
    before = agent.versions.order_by("-number").first()
    assert before is not None
    _date_back(before, start - timedelta(days=1))
    count = 1_900
    runs = ended_runs(
        credential, before, spread(start, change, count), _outcomes(rng, count, 0.85),
        seconds=[rng.uniform(20, 45) for _ in range(count)],
    )  # fmt: skip
    _metrics(rng, runs)
    drift_cycle(now=change - timedelta(minutes=1))  # the cycles of the past weeks, in one
    # The owner pinned the October weeks as the known-good baseline (the demo agents' earlier
    # versions, from the other demo loaders, behave differently and must not be the reference).
    baseline_pin(
        agent=agent, environment="prod", version=before, start=start,
        end=change - timedelta(days=1), actor=Actor.user(actor),
        note="October policy pack: the known-good weeks",
    )  # fmt: skip

    registry.agent_update(
        actor=actor, agent=agent, data={"knowledge_base_version": "claims-kb-2026-11"},
        summary="Knowledge base refresh: November policy pack",
    )  # fmt: skip
    after = agent.versions.order_by("-number").first()
    assert after is not None
    _date_back(after, change)
    recent = 420
    new_runs = ended_runs(
        credential, after, spread(change + timedelta(minutes=3), now - timedelta(minutes=2), recent),
        _outcomes(rng, recent, 0.93), seconds=[rng.uniform(20, 45) for _ in range(recent)],
    )  # fmt: skip
    _metrics(rng, new_runs)
    drift_cycle(now=now)
    return count + recent
