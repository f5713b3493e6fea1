"""Issue 8's scenario end to end: a claims agent approves ~85% for weeks, a knowledge-base
version change is recorded, the rate moves to ~91%. One drift cycle raises an alert naming the
change; one rollback makes new runs use the previous version."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.drift.constants import AlertStatus, BaselineState, Metric
from apps.drift.models import Baseline, DriftAlert
from apps.drift.services import alert_headline, drift_cycle
from apps.registry import services as registry
from apps.releases.services import version_rollback
from apps.runtime import services as runtime

from .runs import approvals, claims_approver, ended_runs, spread

pytestmark = pytest.mark.django_db


@pytest.fixture
def claims_agent(org, settings):
    settings.DRIFT_BASELINE_RUNS = 1000
    return claims_approver(org)


def test_a_knowledge_base_change_that_moves_the_approval_rate_is_caught_and_rolled_back(
    org, claims_agent, django_capture_on_commit_callbacks
):
    agent, credential = claims_agent
    v1 = agent.versions.get()
    now = timezone.now()
    # Ten days at 85 %: 1,700 runs, the first 1,000 of them (six days) become v1's baseline.
    ended_runs(credential, v1, spread(now - timedelta(days=10), now, 1700), approvals(1700, 17))
    report = drift_cycle(now=now + timedelta(minutes=5))
    assert report.sampled == 1700
    baseline = Baseline.objects.get(agent=agent, state=BaselineState.SET)
    assert (baseline.version, baseline.runs) == (v1, 1000)
    assert baseline.stats["outcomes"] == {"approved": 850, "rejected": 150}
    assert report.raised == []  # the weeks since the baseline look like it: no alert

    # The knowledge base is updated: a recorded change, and v2 serves prod from now on.
    registry.agent_update(
        actor=org.owner, agent=agent, data={"knowledge_base_version": "kb-2026-03"},
        summary="Knowledge base refresh",
    )  # fmt: skip
    v2 = agent.versions.get(number=2)
    run, _ = runtime.run_start(credential=credential, task="Triage claim 7")
    assert run.version == v2
    later = now + timedelta(hours=8)
    ended_runs(
        credential, v2, spread(now + timedelta(minutes=10), later, 1000), approvals(1000, 18)
    )

    with django_capture_on_commit_callbacks(execute=True):
        report = drift_cycle(now=later + timedelta(minutes=5))

    alert = DriftAlert.objects.get(agent=agent, metric=Metric.OUTCOME)
    assert report.raised == [alert]
    assert (alert.version, alert.baseline, alert.status) == (v2, baseline, AlertStatus.OPEN)
    assert alert.subject == "approved"
    assert (round(alert.baseline_value, 2), round(alert.current_value, 2)) == (0.85, 0.90)
    assert alert.p_value < 0.001
    assert now - timedelta(minutes=1) <= alert.onset_at <= now + timedelta(minutes=30)
    assert alert.suspected_change == "v2: knowledge base kb-2026-01 → kb-2026-03"
    assert alert_headline(alert).startswith("outcome “approved” 85% → 90% since ")
    assert alert_headline(alert).endswith(", p < 0.001")

    # The same drift seen again updates the alert instead of raising another.
    report = drift_cycle(now=later + timedelta(minutes=10))
    assert report.raised == [] and [a.pk for a in report.updated] == [alert.pk]
    alert.refresh_from_db()
    assert alert.updates == 2

    # One click: prod serves v1 again, for the next run already.
    version_rollback(actor=org.owner, agent=agent, environment="prod", note="drift")
    run, _ = runtime.run_start(credential=credential, task="Triage claim 8")
    assert run.version == v1
    assert run.version.snapshot["knowledge_base_version"] == "kb-2026-01"
