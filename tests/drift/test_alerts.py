"""Alerts: baselines in force, one alert per drift, what people do with it, who may, and the
kill switch's answer to a critical drift."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.common.errors import ApplicationError
from apps.drift import services
from apps.drift.constants import AlertStatus, BaselineSource, BaselineState, Metric, Severity
from apps.drift.models import Baseline, DriftAlert
from apps.killswitch.constants import TriggerKind, TriggerResponse
from apps.killswitch.models import KillTrigger
from apps.registry import services as registry

from ..clients import api_client, console_client
from .runs import approvals, drift_after_change, ended_runs, spread

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_baselines(settings):
    settings.DRIFT_BASELINE_RUNS = 300


@pytest.fixture
def alert(org, claims, django_capture_on_commit_callbacks) -> DriftAlert:
    with django_capture_on_commit_callbacks(execute=True):
        drift_after_change(org, claims.agent, claims.credential)
    return DriftAlert.objects.get(metric=Metric.OUTCOME)


def test_a_drifted_new_version_holds_back_its_own_baseline(alert):
    baselines = Baseline.objects.filter(agent=alert.agent)
    assert baselines.get(version=alert.version).state == BaselineState.FORMING
    assert alert.baseline.version.number == alert.version.number - 1
    assert alert.severity == Severity.CRITICAL  # 85 % → 60 %: large and far beyond chance
    assert (
        alert.suspected_change == f"v{alert.version.number}: knowledge base kb-2026-01 → kb-2026-03"
    )
    assert AuditEvent.objects.filter(action="drift.alert.raised").count() == 1


def test_a_new_version_that_behaves_the_same_gets_its_own_baseline(org, claims):
    _, new, _ = drift_after_change(org, claims.agent, claims.credential, approved_per_20=17)
    assert not DriftAlert.objects.exists()
    assert Baseline.objects.get(version=new).state == BaselineState.SET


def test_a_pinned_baseline_is_in_force_for_every_version(org, claims, alert):
    now = timezone.now()
    baseline = services.baseline_pin(
        agent=claims.agent, environment="prod", version=alert.version,
        start=now - timedelta(days=1), end=now + timedelta(days=1), actor=Actor.user(org.owner),
    )  # fmt: skip
    assert baseline.source == BaselineSource.PINNED and baseline.runs == 300
    refs = services._references()[(claims.agent.pk, "prod")]
    assert services.reference_for(refs, alert.version.pk) == baseline
    assert services.reference_for(refs, alert.baseline.version_id) == baseline


def test_pinning_a_window_with_too_few_runs_is_refused(org, claims, alert):
    now = timezone.now()
    with pytest.raises(ApplicationError, match="needs at least"):
        services.baseline_pin(
            agent=claims.agent, environment="prod", version=alert.version,
            start=now - timedelta(days=30), end=now - timedelta(days=29), actor=Actor.user(org.owner),
        )  # fmt: skip


def test_acknowledge_snooze_and_resolve_are_audited_and_resolve_closes_it(org, alert):
    actor = Actor.user(org.owner)
    services.alert_acknowledge(alert=alert, actor=actor)
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.acknowledged_by_name == "alice"
    services.alert_snooze(alert=alert, actor=actor, hours=4)
    assert alert.status == AlertStatus.SNOOZED
    with pytest.raises(ApplicationError):
        services.alert_snooze(alert=alert, actor=actor, hours=0)
    services.alert_resolve(alert=alert, actor=actor, resolution="Rolled back")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolution == "Rolled back"
    with pytest.raises(ApplicationError, match="already resolved"):
        services.alert_acknowledge(alert=alert, actor=actor)
    actions = set(
        AuditEvent.objects.filter(action__startswith="drift.alert.").values_list(
            "action", flat=True
        )
    )
    assert actions == {
        "drift.alert.raised",
        "drift.alert.acknowledged",
        "drift.alert.snoozed",
        "drift.alert.resolved",
    }


def test_a_snooze_that_ran_out_reopens_the_alert_when_the_drift_is_still_seen(org, claims, alert):
    services.alert_snooze(alert=alert, actor=Actor.user(org.owner), hours=24)
    services.drift_cycle(now=alert.last_seen_at + timedelta(minutes=30))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.SNOOZED  # still snoozed
    DriftAlert.objects.filter(pk=alert.pk).update(
        snoozed_until=timezone.now() - timedelta(minutes=1)
    )
    services.drift_cycle(now=alert.last_seen_at + timedelta(minutes=40))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN and alert.updates == 3


def test_after_resolving_a_drift_still_there_raises_a_new_alert(org, alert):
    services.alert_resolve(alert=alert, actor=Actor.user(org.owner))
    report = services.drift_cycle(now=alert.last_seen_at + timedelta(minutes=5))
    assert [a.metric for a in report.raised] == [Metric.OUTCOME]
    assert DriftAlert.objects.filter(metric=Metric.OUTCOME).count() == 2


def test_accepting_the_change_pins_the_new_versions_runs_and_resolves(org, alert):
    baseline = services.alert_accept(alert=alert, actor=Actor.user(org.owner))
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED
    assert baseline.version == alert.version and baseline.source == BaselineSource.PINNED


def test_a_critical_drift_engages_the_kill_switch_rule_that_answers_it(
    org, claims, django_capture_on_commit_callbacks
):
    KillTrigger.objects.create(
        name="Stop on critical drift", kind=TriggerKind.DRIFT_CRITICAL,
        response=TriggerResponse.SUSPEND_AGENT, agent=claims.agent, threshold=1, created_by=org.admin,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        drift_after_change(org, claims.agent, claims.credential)
    alert = DriftAlert.objects.get(metric=Metric.OUTCOME)
    assert alert.kill_switch_engaged
    claims.agent.refresh_from_db()
    assert claims.agent.status == "suspended"


def test_people_see_alerts_of_agents_they_may_read_and_only_owners_act(org, alert):
    assert console_client(org.owner).get("/drift/").status_code == 200
    page = console_client(org.approver).get(f"/drift/{alert.pk}/")
    assert page.status_code == 200 and "kb-2026-03" in page.content.decode()
    assert console_client(org.other_owner).get(f"/drift/{alert.pk}/").status_code == 404
    assert console_client(org.outsider).get(f"/drift/{alert.pk}/").status_code != 200
    refused = console_client(org.approver).post(f"/drift/{alert.pk}/acknowledge")
    assert refused.status_code == 403
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN
    done = console_client(org.owner).post(f"/drift/{alert.pk}/resolve", {"resolution": "x" * 301})
    assert done.status_code == 302
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN  # too long a note: refused, nothing changed


def test_the_api_lists_and_works_alerts(org, alert):
    client = api_client(org.owner)
    listed = client.get("/api/v1/drift/alerts/").json()
    assert listed["count"] == 1
    body = listed["results"][0]
    assert body["url"].endswith(f"/api/v1/drift/alerts/{alert.pk}/")
    assert body["headline"].startswith("outcome “approved” 85% → 60% since ")
    assert client.get("/api/v1/drift/alerts/?status=nope").status_code == 400
    assert (
        client.post(f"/api/v1/drift/alerts/{alert.pk}/snooze", {}, format="json").status_code == 400
    )
    assert (
        client.post(
            f"/api/v1/drift/alerts/{alert.pk}/snooze", {"hours": 9999}, format="json"
        ).status_code
        == 400
    )
    snoozed = client.post(f"/api/v1/drift/alerts/{alert.pk}/snooze", {"hours": 2}, format="json")
    assert snoozed.status_code == 200 and snoozed.json()["status"] == "snoozed"
    assert (
        api_client(org.approver)
        .post(f"/api/v1/drift/alerts/{alert.pk}/resolve", {}, format="json")
        .status_code
        == 403
    )
    assert api_client(org.other_owner).get(f"/api/v1/drift/alerts/{alert.pk}/").status_code == 404


def test_noise_in_a_steady_agent_raises_nothing(org, claims):
    now = timezone.now()
    version = claims.agent.versions.order_by("-number").first()
    ended_runs(
        claims.credential, version, spread(now - timedelta(days=6), now, 900), approvals(900, 17)
    )
    for hours in range(0, 24, 6):
        report = services.drift_cycle(now=now + timedelta(hours=hours))
        assert report.raised == []


def test_a_quiet_agents_baseline_waits_past_its_days_for_enough_runs(org, claims):
    now = timezone.now()
    version = claims.agent.versions.order_by("-number").first()
    ended_runs(
        claims.credential,
        version,
        spread(now - timedelta(days=20), now - timedelta(days=11), 60),
        approvals(60, 17),
    )
    services.drift_cycle(now=now - timedelta(days=10))
    baseline = Baseline.objects.get(agent=claims.agent)
    assert (baseline.state, baseline.runs) == (BaselineState.FORMING, 60)  # 7 days, too few runs
    ended_runs(
        claims.credential, version, spread(now - timedelta(days=10), now, 90), approvals(90, 17)
    )
    services.drift_cycle(now=now + timedelta(minutes=2))
    baseline.refresh_from_db()
    assert (baseline.state, baseline.runs) == (BaselineState.SET, 100)  # the fewest that alert


def test_a_drift_already_there_when_the_job_first_runs_is_caught_on_the_next_cycle(org, claims):
    """A backlog sampled in one cycle holds the old version's runs and the drifted new
    version's: the new version's own baseline waits for a comparison with the old one's."""
    now = timezone.now()
    old = claims.agent.versions.order_by("-number").first()
    ended_runs(
        claims.credential,
        old,
        spread(now - timedelta(days=4), now - timedelta(hours=8), 400),
        approvals(400, 17),
    )
    registry.agent_update(
        actor=org.owner, agent=claims.agent, data={"knowledge_base_version": "kb-2026-03"}
    )
    new = claims.agent.versions.order_by("-number").first()
    ended_runs(
        claims.credential, new, spread(now - timedelta(hours=7), now, 300), approvals(300, 12)
    )
    first = services.drift_cycle(now=now + timedelta(minutes=2))
    assert first.sampled == 700 and first.raised == []
    assert Baseline.objects.get(version=new).state == BaselineState.FORMING  # not from drifted runs
    second = services.drift_cycle(now=now + timedelta(minutes=7))
    assert [(a.version, a.metric) for a in second.raised] == [(new, Metric.OUTCOME)]
    assert Baseline.objects.get(version=new).state == BaselineState.FORMING  # held by the alert


def test_an_owner_pins_and_unpins_a_baseline_from_the_releases_page(org, claims, alert):
    day = timezone.localtime(alert.last_seen_at).strftime("%Y-%m-%dT%H:%M")
    start = timezone.localtime(alert.last_seen_at - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    form = {"environment": "prod", "version": alert.version.number, "start": start, "end": day}
    pin = "/agents/claims-approver/baselines/pin"
    refused = console_client(org.approver).post(pin, form)
    assert (
        refused.status_code == 302
        and not Baseline.objects.filter(source=BaselineSource.PINNED).exists()
    )
    done = console_client(org.owner).post(pin, form, follow=True)
    assert "runs are the baseline in prod" in done.content.decode()
    assert Baseline.objects.get(source=BaselineSource.PINNED).version == alert.version
    empty = console_client(org.owner).post(pin, {**form, "start": day, "end": start}, follow=True)
    assert "must end after it starts" in empty.content.decode()
    console_client(org.owner).post(
        "/agents/claims-approver/baselines/unpin", {"environment": "prod"}
    )
    assert Baseline.objects.get(source=BaselineSource.PINNED).state == BaselineState.RETIRED


def test_the_alert_list_filters_by_severity_environment_and_agent(org, alert):
    client = console_client(org.owner)
    assert "Claims approver" in client.get("/drift/?severity=critical").content.decode()
    assert (
        "1 alert" in client.get("/drift/?agent=claims-approver&environment=prod").content.decode()
    )
    assert "No live drift alerts" in client.get("/drift/?severity=warning").content.decode()
    assert client.get("/drift/?severity=loud").status_code == 400
