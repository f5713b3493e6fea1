"""Drift alerts are told to the agent's owner and the organisation-wide admins (each address
once) and to the notification channels of the agent's department: planned once however often,
nothing for a snoozed or resolved alert, queued once committed, the email carrying the
headline and the link (Django's locmem outbox), a channel's webhook signed (a real HTTP
receiver on 127.0.0.1), and a notice sent twice sent once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.approvals import channel_services
from apps.approvals.models import NotificationChannel
from apps.approvals.notify import RetryableDeliveryError
from apps.drift import tasks
from apps.drift.models import Baseline, DriftAlert, DriftAlertNotice
from apps.drift.notify import drift_notices_plan
from apps.registry import services as registry
from apps.registry.models import Agent

from ..approvals.conftest import fresh_caches  # noqa: F401  (fixture: an empty broker)
from ..approvals.receiver import Receiver, serve_receiver
from ..approvals.test_notify import queued, verify
from ..factories import make_user

pytestmark = pytest.mark.django_db

PUBLIC = "https://tether.example.com"
SECRET = "drift-hook-secret-0123456789"
ONSET = datetime(2026, 1, 13, 14, 0, tzinfo=UTC)  # a Tuesday
FIRST_SEEN = datetime(2026, 1, 13, 15, 30, tzinfo=UTC)
HEADLINE = "outcome “approved” 85% → 91% since Tue 14:00, p < 0.001"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.TETHER_PUBLIC_URL = PUBLIC
    settings.TIME_ZONE = "UTC"  # the headline's "since Tue 14:00" is in the console's zone


@pytest.fixture
def receiver() -> Any:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def people(org: Any) -> Any:
    """The owner (alice), the admin (ada) and finance (fiona) with an email address."""
    for user in (org.owner, org.admin, org.finance, org.approver):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return org


@pytest.fixture
def agent(people: Any) -> Agent:
    return registry.agent_create(
        actor=people.owner,
        data={
            "name": "Claims Triage", "slug": "claims-triage", "mission": "Triage claims.",
            "department": people.claims, "environments": ["prod"],
        },
    )  # fmt: skip


def make_alert(agent: Agent, **extra: Any) -> DriftAlert:
    version = agent.versions.get()
    baseline, _ = Baseline.objects.get_or_create(
        agent=agent, environment="prod", version=version, source="automatic",
        defaults={"state": "set", "target_runs": 500, "target_days": 7,
                  "window_start": timezone.now(), "set_by_name": "system"},
    )  # fmt: skip
    fields: dict[str, Any] = {
        "agent": agent, "environment": "prod", "version": version, "baseline": baseline,
        "metric": "outcome", "window": "day", "severity": "warning", "test": "chi_square",
        "statistic": 18.4, "p_value": 0.0002, "psi": 0.12, "subject": "approved",
        "baseline_value": 0.85, "current_value": 0.91, "baseline_n": 1200, "current_n": 1000,
        "shares": {"approved": [0.85, 0.91], "denied": [0.15, 0.09]}, "onset_at": ONSET,
        "suspected_change": "knowledge base kb-2026-01 → kb-2026-03",
        "first_seen_at": FIRST_SEEN, "last_seen_at": FIRST_SEEN,
    }  # fmt: skip
    fields.update(extra)
    return DriftAlert.objects.create(**fields)


@pytest.fixture
def alert(agent: Agent) -> DriftAlert:
    return make_alert(agent)


def add_channel(org: Any, kind: str, target: str, **extra: Any) -> NotificationChannel:
    return channel_services.channel_create(
        actor=org.admin, name=extra.pop("name", f"{kind} {target[-12:]}"), kind=kind,
        target=target, **extra,
    )  # fmt: skip


def alert_url(alert: DriftAlert) -> str:
    return PUBLIC + reverse("drift:alert", args=[alert.pk])


def send_all(alert: DriftAlert, **filters: Any) -> list[bool]:
    notices = DriftAlertNotice.objects.filter(alert=alert, **filters).order_by("pk")
    return [tasks.drift_notify(pk) for pk in notices.values_list("pk", flat=True)]


# --- planning ------------------------------------------------------------------------------


def test_the_owner_and_the_org_wide_admins_are_told_once_each_with_the_departments_channels(
    people: Any, agent: Agent, alert: DriftAlert, receiver: Receiver
) -> None:
    make_user("root", email="root@example.com", is_superuser=True)
    make_user("adele", ("admin", None), email="ALICE@example.com")  # the owner's address
    make_user("andy", ("admin", None), email="andy@example.com", is_active=False)
    make_user("dora", ("owner", people.claims), email="dora@example.com")  # not this agent's
    everyone = add_channel(people, "slack", receiver.url("/all"), name="Everyone")
    mine = add_channel(people, "webhook", receiver.url("/claims"), department=people.claims)
    add_channel(people, "slack", receiver.url("/payments"), department=people.payments)
    off = add_channel(people, "email", "old-list@example.com", name="Old list")
    channel_services.channel_set_enabled(actor=people.admin, channel=off, enabled=False)

    planned = drift_notices_plan(alert_id=alert.pk, event="raised")

    notices = DriftAlertNotice.objects.filter(alert=alert)
    assert sorted(planned) == sorted(notices.values_list("pk", flat=True))
    addresses = {n.target.casefold() for n in notices if n.kind == "email"}
    assert addresses == {"alice@example.com", "ada@example.com", "root@example.com"}
    assert {(n.kind, n.target, n.channel_id) for n in notices if n.kind == "channel"} == {
        ("channel", str(everyone.pk), everyone.pk),
        ("channel", str(mine.pk), mine.pk),
    }
    assert {(n.event, n.status) for n in notices} == {("raised", "queued")}
    # Planned again (Celery delivering twice): nothing new, the same notices still queued.
    assert drift_notices_plan(alert_id=alert.pk, event="raised") == sorted(planned)
    assert notices.count() == 5


def test_growing_critical_is_told_again_and_only_the_unsent_notices_come_back(
    people: Any, alert: DriftAlert, mailoutbox: list[Any]
) -> None:
    raised = drift_notices_plan(alert_id=alert.pk, event="raised")
    assert send_all(alert) == [True, True]

    assert drift_notices_plan(alert_id=alert.pk, event="raised") == []  # all sent
    critical = drift_notices_plan(alert_id=alert.pk, event="critical")

    assert len(critical) == 2 and not set(critical) & set(raised)
    assert sorted(
        DriftAlertNotice.objects.filter(alert=alert).values_list("event", "target")
    ) == [("critical", "ada@example.com"), ("critical", "alice@example.com"),
          ("raised", "ada@example.com"), ("raised", "alice@example.com")]  # fmt: skip


def test_a_snoozed_or_resolved_alert_is_told_nothing_and_a_snooze_that_ran_out_is_told(
    people: Any, agent: Agent
) -> None:
    now = timezone.now()
    snoozed = make_alert(agent, status="snoozed", snoozed_until=now + timedelta(hours=4))
    resolved = make_alert(agent, metric="latency", status="resolved", resolved_at=now)
    lapsed = make_alert(
        agent, metric="cost", status="snoozed", snoozed_until=now - timedelta(minutes=1)
    )

    assert drift_notices_plan(alert_id=snoozed.pk, event="raised") == []
    assert drift_notices_plan(alert_id=resolved.pk, event="critical") == []
    assert drift_notices_plan(alert_id=0, event="raised") == []  # gone
    assert not DriftAlertNotice.objects.filter(alert__in=[snoozed, resolved]).exists()
    assert len(drift_notices_plan(alert_id=lapsed.pk, event="raised")) == 2


def test_the_notices_are_queued_by_id_only_once_they_commit(
    people: Any,
    alert: DriftAlert,
    django_capture_on_commit_callbacks: Any,
    fresh_caches: None,  # noqa: F811
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        tasks.queue_drift_notices(alert.pk, "raised")
        assert queued("drift.alert_notify") == []  # nothing before the commit
    for callback in callbacks:
        callback()

    notices = DriftAlertNotice.objects.filter(alert=alert)
    assert sorted(queued("drift.alert_notify")) == sorted(
        (pk,) for pk in notices.values_list("pk", flat=True)
    )
    assert notices.count() == 2


# --- sending -------------------------------------------------------------------------------


def test_the_owner_is_emailed_the_headline_the_facts_and_the_link_to_the_alert(
    people: Any, alert: DriftAlert, mailoutbox: list[Any]
) -> None:
    drift_notices_plan(alert_id=alert.pk, event="raised")

    assert send_all(alert, target="alice@example.com") == [True]

    [message] = mailoutbox
    url = alert_url(alert)
    assert url == f"{PUBLIC}/drift/{alert.pk}/"
    assert message.to == ["alice@example.com"]
    assert message.subject == f"[Tether] Drift on claims-triage (prod): {HEADLINE}"
    for fact in (
        "Agent: Claims Triage (claims-triage)",
        "Environment: prod",
        "Version: v1",
        "Metric: Outcome, last 24 hours",
        "Test: chi-square test, p < 0.001, PSI 0.12",
        "Samples: 1,000 runs against a baseline of 1,200",
        "Suspected change: knowledge base kb-2026-01 → kb-2026-03",
        "Severity: Warning",
        "First seen: 2026-01-13 15:30 UTC",
        f"Open the drift alert: {url}",
    ):
        assert fact in message.body, fact
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and f'href="{url}"' in html and "drift alert" in html
    notice = DriftAlertNotice.objects.get(alert=alert, target="alice@example.com")
    assert (notice.status, notice.attempts, notice.last_error) == ("sent", 1, "")
    assert notice.sent_at is not None


def test_a_drift_grown_critical_says_critical_drift(
    people: Any, alert: DriftAlert, mailoutbox: list[Any]
) -> None:
    DriftAlert.objects.filter(pk=alert.pk).update(severity="critical", suspected_change="")
    drift_notices_plan(alert_id=alert.pk, event="critical")

    send_all(alert, target="ada@example.com")

    [message] = mailoutbox
    assert message.subject == f"[Tether] Critical drift on claims-triage (prod): {HEADLINE}"
    assert "Severity: Critical" in message.body
    assert "Suspected change" not in message.body  # none was found


def test_a_channels_signed_webhook_and_slack_message_carry_the_alert_and_the_link(
    people: Any, alert: DriftAlert, receiver: Receiver
) -> None:
    hook = add_channel(
        people, "webhook", receiver.url("/hook"), secret=SECRET, department=people.claims
    )
    add_channel(people, "slack", receiver.url("/slack"))
    drift_notices_plan(alert_id=alert.pk, event="raised")

    assert send_all(alert, kind="channel") == [True, True]

    by_path = {request.path: request for request in receiver.requests}
    signed = by_path["/hook"]
    assert verify(SECRET, signed.headers, signed.body)
    assert not verify("another-secret-entirely", signed.headers, signed.body)
    notice = DriftAlertNotice.objects.get(alert=alert, channel=hook)
    assert signed.headers["X-Tether-Event"] == "drift.alert"
    assert signed.headers["X-Tether-Delivery"] == f"drift-alert-notice-{notice.pk}"
    url = alert_url(alert)
    body = signed.json
    assert (body["type"], body["id"], body["event"], body["url"]) == (
        "tether.drift.alert", f"drift-alert:{alert.pk}:raised", "raised", url,
    )  # fmt: skip
    assert body["summary"] == f"Drift on claims-triage (prod): {HEADLINE}"
    assert body["drift_alert"] == {
        "id": alert.pk, "agent": "claims-triage", "environment": "prod", "version": 1,
        "metric": "outcome", "key": None, "window": "day", "subject": "approved",
        "test": "chi_square", "baseline_value": 0.85, "current_value": 0.91,
        "baseline_n": 1200, "current_n": 1000, "p_value": 0.0002, "psi": 0.12,
        "severity": "warning", "status": "open", "onset_at": "2026-01-13T14:00:00Z",
        "first_seen_at": "2026-01-13T15:30:00Z",
        "suspected_change": "knowledge base kb-2026-01 → kb-2026-03", "url": url,
    }  # fmt: skip
    slack = by_path["/slack"].json
    assert url in slack["text"]
    [button] = slack["blocks"][1]["elements"]
    assert button["text"]["text"] == "Open the drift alert" and button["url"] == url


def test_sending_a_notice_twice_sends_nothing_twice(
    people: Any, alert: DriftAlert, receiver: Receiver, mailoutbox: list[Any]
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), secret=SECRET)
    drift_notices_plan(alert_id=alert.pk, event="raised")

    first = send_all(alert)
    again = send_all(alert)

    assert first == [True, True, True] and again == [False, False, False]
    assert len(mailoutbox) == 2  # alice and ada, once each
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert set(DriftAlertNotice.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_a_failing_webhook_is_retried_then_given_up_with_its_error_kept(
    people: Any, alert: DriftAlert, receiver: Receiver
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), secret=SECRET)
    drift_notices_plan(alert_id=alert.pk, event="raised")
    notice = DriftAlertNotice.objects.get(alert=alert, kind="channel")
    receiver.status = 503

    with pytest.raises(RetryableDeliveryError):  # called directly, Celery re-raises it: a retry
        tasks.drift_notify(notice.pk)

    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("failed", 1)
    assert "HTTP 503 from 127.0.0.1" in notice.last_error
    task = tasks.drift_notify
    task.push_request(retries=task.max_retries)  # the worker's last retry
    try:
        assert task.run(notice.pk) is False
    finally:
        task.pop_request()
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("gave_up", 2)
    assert tasks.drift_notify(notice.pk) is False  # given up: never sent again
    assert len(receiver.requests) == 2
