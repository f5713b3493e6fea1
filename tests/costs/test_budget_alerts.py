"""Monthly spend budgets alert at 50, 80 and 100 %: each threshold once a month however often
the check runs, a jump over several thresholds recorded in full but told once, finance emailed
and the department's channels told (a real HTTP receiver on 127.0.0.1, Django's locmem
outbox), a failing webhook retried and recorded, the queued tasks read back from the real
broker, and the alerts card on /costs/ scoped to who may read the budget."""

from __future__ import annotations

import calendar
import contextlib
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.approvals import channel_services
from apps.approvals.models import NotificationChannel
from apps.approvals.notify import RetryableDeliveryError
from apps.audit.models import AuditEvent
from apps.costs import alert_selectors, tasks
from apps.costs.alerts import (
    alert_channels,
    alert_notices_plan,
    budget_alerts_check,
    finance_people,
    month_spent,
)
from apps.costs.models import BudgetAlert, BudgetAlertNotice
from apps.costs.rollups import forget_month_spend
from apps.runtime import services as runtime
from apps.runtime.models import Budget

from ..approvals.conftest import fresh_caches  # noqa: F401  (fixture: an empty broker)
from ..approvals.receiver import Receiver, serve_receiver
from ..approvals.test_notify import queued, verify
from ..clients import console_client
from ..factories import make_user
from .spend import Spender, spender

pytestmark = pytest.mark.django_db

PUBLIC = "https://tether.example.com"
SECRET = "budget-hook-secret-0123456789"
DASHBOARD = f"{PUBLIC}/costs/?department=claims"
TOKENS_PER_DOLLAR = 400_000  # gpt-4o input: $2.50 per million tokens


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.TETHER_PUBLIC_URL = PUBLIC


@pytest.fixture
def receiver() -> Any:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def people(org: Any) -> Any:
    """Finance (fiona, organisation-wide) and the admin (ada) with an email address."""
    for user in (org.finance, org.admin):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return org


@pytest.fixture
def claims(people: Any) -> Spender:
    return spender(people, "claims-triage", people.claims)


@pytest.fixture
def budget(people: Any) -> Budget:
    return runtime.budget_create(
        actor=people.admin, name="Claims AI spend", kind="spend", scope="department_month",
        department=people.claims, limit=Decimal("10"),
    )  # fmt: skip


@pytest.fixture
def check(django_capture_on_commit_callbacks: Any) -> Any:
    """Run the check and its after-commit steps (planning, queueing), as the commit would."""

    def run(**arguments: Any) -> list[BudgetAlert]:
        with django_capture_on_commit_callbacks(execute=True):
            recorded = budget_alerts_check(**arguments)
        return recorded

    return run


def spend(who: Spender, dollars: str, when: datetime | None = None) -> None:
    """Store a priced model call of ``dollars`` (gpt-4o input tokens) and read spend afresh."""
    tokens = int(Decimal(dollars) * TOKENS_PER_DOLLAR)
    who.call(when or timezone.now(), tokens=(tokens, 0))
    forget_month_spend()  # the ingest's after-commit step, which the test transaction holds back


def thresholds(alerts: list[BudgetAlert]) -> list[int]:
    return [alert.threshold for alert in alerts]


def add_channel(org: Any, kind: str, target: str, **extra: Any) -> NotificationChannel:
    return channel_services.channel_create(
        actor=org.admin, name=extra.pop("name", f"{kind} {target[-12:]}"), kind=kind,
        target=target, **extra,
    )  # fmt: skip


def deliver_all(alert: BudgetAlert) -> list[bool]:
    return [
        tasks.budget_alert_notify(pk)
        for pk in BudgetAlertNotice.objects.filter(alert=alert).values_list("pk", flat=True)
    ]


# --- recording -----------------------------------------------------------------------------------


def test_spend_crossing_50_then_80_then_100_alerts_each_threshold_once_however_often_checked(
    claims: Spender, budget: Budget, check: Any
) -> None:
    spend(claims, "4")
    assert check() == check() == []  # 40 %: nothing yet

    spend(claims, "1.50")  # 55 %
    assert thresholds(check()) == [50]
    assert check() == []
    spend(claims, "3")  # 85 %
    assert thresholds(check()) == [80]
    assert check() == []
    spend(claims, "2")  # 105 %
    assert thresholds(check()) == [100]
    assert check() == []

    recorded = BudgetAlert.objects.filter(budget=budget).order_by("threshold")
    assert [(a.threshold, a.spent_usd, a.limit_usd, a.covered_by_id) for a in recorded] == [
        (50, Decimal("5.5"), Decimal("10"), None),
        (80, Decimal("8.5"), Decimal("10"), None),
        (100, Decimal("10.5"), Decimal("10"), None),
    ]
    month = timezone.now().date().replace(day=1)
    assert {a.period for a in recorded} == {month}
    # Each was announced on its own: one email to finance each, nothing more.
    assert sorted(
        BudgetAlertNotice.objects.values_list("alert__threshold", "kind", "target")
    ) == [(50, "email", "fiona@example.com"), (80, "email", "fiona@example.com"),
          (100, "email", "fiona@example.com")]  # fmt: skip
    events = AuditEvent.objects.filter(action="costs.budget.alert").order_by("seq")
    assert [e.after["threshold"] for e in events] == [50, 80, 100]
    assert {(e.actor_type, e.actor_name, e.target_type, e.target_id) for e in events} == {
        ("system", "costs", "budget", str(budget.pk))
    }
    assert events[2].after["spent_usd"] == "10.50" and events[2].after["announced"] is True


def test_a_jump_straight_over_100_records_all_three_alerts_and_sends_one_message(
    claims: Spender, budget: Budget, check: Any, mailoutbox: list[Any]
) -> None:
    spend(claims, "3")
    assert check() == []
    spend(claims, "7.50")  # 30 % to 105 % within a minute

    fifty, eighty, hundred = check()

    assert thresholds([fifty, eighty, hundred]) == [50, 80, 100]
    assert fifty.covered_by == hundred and eighty.covered_by == hundred
    assert hundred.covered_by is None
    assert BudgetAlertNotice.objects.filter(alert__in=[fifty, eighty]).count() == 0
    assert alert_notices_plan(alert_id=fifty.pk) == []  # a covered alert is never told on its own
    assert deliver_all(hundred) == [True]
    [message] = mailoutbox
    assert message.to == ["fiona@example.com"]
    assert "(105%)" in message.subject and message.subject.endswith("; new spend is refused")
    assert "Reached: 100% of the monthly limit (50%, 80% crossed at the same time)" in message.body
    assert "What happens now: Stop: new spend is refused until the month ends." in message.body
    events = AuditEvent.objects.filter(action="costs.budget.alert")
    assert sorted((e.after["threshold"], e.after["announced"]) for e in events) == [
        (50, False), (80, False), (100, True),
    ]  # fmt: skip


def test_disabled_budgets_and_other_scopes_never_alert(
    people: Any, claims: Spender, check: Any
) -> None:
    off = runtime.budget_create(
        actor=people.admin, name="Old limit", kind="spend", scope="department_month",
        department=people.claims, limit=Decimal("1"), enabled=False,
    )  # fmt: skip
    runtime.budget_create(
        actor=people.admin, name="Triage per month", kind="spend", scope="agent_month",
        agent=claims.agent, limit=Decimal("1"),
    )  # fmt: skip
    spend(claims, "5")

    assert check() == []
    assert not BudgetAlert.objects.exists()
    off.enabled = True
    off.save(update_fields=["enabled"])
    assert thresholds(check()) == [50, 80, 100]


def test_the_thresholds_count_again_in_a_new_month(
    claims: Spender, budget: Budget, check: Any
) -> None:
    first_of_this_month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (first_of_this_month - timedelta(days=1)).replace(day=15, hour=12)
    spend(claims, "6", when=last_month)

    assert thresholds(check(now=last_month)) == [50]  # last month's check, from its rollup
    assert check() == []  # this month nothing is spent yet
    spend(claims, "5")
    [alert] = check()

    assert (alert.threshold, alert.period) == (50, first_of_this_month.date())
    assert BudgetAlert.objects.filter(budget=budget, threshold=50).count() == 2


def test_two_checks_at_once_record_each_alert_once_and_queue_each_notice_once(
    transactional_db: None,
    org: Any,
    fresh_caches: None,  # noqa: F811
) -> None:
    """Two workers: real transactions, the unique constraint deciding who records."""
    org.finance.email = "fiona@example.com"
    org.finance.save(update_fields=["email"])
    claims = spender(org, "claims-triage", org.claims)
    runtime.budget_create(
        actor=org.admin, name="Claims AI spend", kind="spend", scope="department_month",
        department=org.claims, limit=Decimal("10"),
    )  # fmt: skip
    claims.call(timezone.now(), tokens=(8_400_000, 0))  # $21: over 100 % at once
    forget_month_spend()
    start = threading.Barrier(2)
    results: list[list[BudgetAlert]] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(budget_alerts_check())
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(len(found) for found in results) == [0, 3]  # one worker recorded all three
    assert BudgetAlert.objects.count() == 3
    [notice] = BudgetAlertNotice.objects.all()
    assert queued("costs.budget_alert_notify") == [(notice.pk,)]
    assert AuditEvent.objects.filter(action="costs.budget.alert").count() == 3


# --- planning and queueing -----------------------------------------------------------------------


def test_the_notices_are_planned_and_queued_only_once_the_alert_commits(
    people: Any,
    claims: Spender,
    budget: Budget,
    receiver: Receiver,
    django_capture_on_commit_callbacks: Any,
    fresh_caches: None,  # noqa: F811
) -> None:
    everyone = add_channel(people, "slack", receiver.url("/all"), name="Finance")
    mine = add_channel(people, "webhook", receiver.url("/claims"), department=people.claims)
    add_channel(people, "slack", receiver.url("/payments"), department=people.payments)
    off = add_channel(people, "email", "old-list@example.com", name="Old list")
    channel_services.channel_set_enabled(actor=people.admin, channel=off, enabled=False)
    spend(claims, "6")

    with django_capture_on_commit_callbacks(execute=True):
        [alert] = budget_alerts_check()
        assert not BudgetAlertNotice.objects.exists()  # planned after the commit, not in it
        assert queued("costs.budget_alert_notify") == []

    notices = BudgetAlertNotice.objects.filter(alert=alert)
    assert {(n.kind, n.target, n.channel_id) for n in notices} == {
        ("email", "fiona@example.com", None),
        ("channel", str(everyone.pk), everyone.pk),
        ("channel", str(mine.pk), mine.pk),
    }
    assert {n.status for n in notices} == {"queued"}
    # Queued by id in the broker, once the notices were committed; nothing sent yet.
    assert sorted(queued("costs.budget_alert_notify")) == sorted(
        (pk,) for pk in notices.values_list("pk", flat=True)
    )
    assert receiver.requests == []
    # Planned again (Celery, or a later check): nothing new.
    assert alert_notices_plan(alert_id=alert.pk) == sorted(notices.values_list("pk", flat=True))
    assert notices.count() == 3


def test_an_alert_whose_planning_was_lost_is_planned_by_the_next_check(
    claims: Spender, budget: Budget, check: Any
) -> None:
    spend(claims, "6")
    [alert] = budget_alerts_check()  # its after-commit step never runs: the worker died

    assert check() == []  # at once: its own worker may still be planning it
    assert not BudgetAlertNotice.objects.exists()
    assert check(now=timezone.now() + timedelta(minutes=1)) == []
    assert list(BudgetAlertNotice.objects.values_list("alert", "target")) == [
        (alert.pk, "fiona@example.com")
    ]


def test_finance_over_the_department_is_told_and_the_admins_only_when_no_finance_has_an_address(
    people: Any, budget: Budget
) -> None:
    make_user("fred", ("finance", people.claims), email="fred@example.com")
    make_user("pia", ("finance", people.payments), email="pia@example.com")  # not claims'
    make_user("fay", ("finance", people.claims), email="")  # no address

    assert [p.username for p in finance_people(budget)] == ["fiona", "fred"]

    people.finance.email = ""  # the organisation-wide finance person has no address now
    people.finance.save(update_fields=["email"])
    payments = runtime.budget_create(
        actor=people.admin, name="Payments AI spend", kind="spend", scope="department_month",
        department=people.payments, limit=Decimal("10"),
    )  # fmt: skip
    assert [p.username for p in finance_people(payments)] == ["pia"]
    User.objects.filter(username="pia").update(email="")
    assert [p.username for p in finance_people(payments)] == ["ada"]  # the admin, not nobody


def test_a_team_budget_is_held_to_its_teams_spend_and_told_to_its_departments_channels(
    people: Any, receiver: Receiver
) -> None:
    """Team budgets (``Budget.team``, scope ``team_month``) are read through the same helpers
    whether or not the runtime has them yet: a budget in memory stands in for one."""
    in_team = spender(people, "ops-bot", people.claims, team=people.claims_ops)
    elsewhere = spender(people, "claims-intake", people.claims)
    spend(in_team, "4")
    spend(elsewhere, "3")
    mine = add_channel(people, "slack", receiver.url("/claims"), department=people.claims)
    add_channel(people, "slack", receiver.url("/payments"), department=people.payments)
    make_user("tess", ("finance", people.claims_ops), email="tess@example.com")
    team_budget = Budget(name="Ops AI spend", kind="spend", scope="team_month", limit=Decimal(5))
    team_budget.team = people.claims_ops

    month = timezone.now().date().replace(day=1)
    assert month_spent(team_budget, month) == Decimal("4")
    assert list(alert_channels(team_budget)) == [mine]
    assert [p.username for p in finance_people(team_budget)] == ["fiona", "tess"]


# --- delivery ------------------------------------------------------------------------------------


def test_finance_is_emailed_what_was_spent_the_forecast_and_the_link_to_the_departments_costs(
    people: Any, claims: Spender, check: Any, mailoutbox: list[Any]
) -> None:
    runtime.budget_create(
        actor=people.admin, name="Claims AI spend", kind="spend", scope="department_month",
        department=people.claims, limit=Decimal("500"),
    )  # fmt: skip
    first_of_this_month = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    moment = (first_of_this_month - timedelta(days=1)).replace(day=15, hour=12)
    spend(claims, "412.50", when=moment)  # last month, so the forecast is known to the cent
    [_, eighty] = check(now=moment)  # 50 % crossed with it
    days = calendar.monthrange(moment.year, moment.month)[1]
    forecast = Decimal("412.50") / 15 * days  # 15 days elapsed, the 15th included

    assert deliver_all(eighty) == [True]

    [message] = mailoutbox
    month = f"{moment:%B %Y}"
    assert message.subject == (
        f"[Tether] Claims AI spend: $412.50 of $500.00 (82%) spent in {month} — forecast "
        f"${forecast.quantize(Decimal(1)):,} by month end"
    )
    for fact in (
        "Budget: Claims AI spend (",
        "Over: What the Claims department spent this calendar month (UTC)",
        "Reached: 80% of the monthly limit (50% crossed at the same time)",
        f"Spent: $412.50 of $500.00 (82%) in {month}",
        f"Forecast: ${forecast.quantize(Decimal('0.01')):,} by {days} {moment:%B}",
        "At the limit: Stop: new spend is refused until the month ends.",
        f"Recorded at: {moment:%Y-%m-%d} 12:00 UTC",
        f"Open the costs dashboard: {DASHBOARD}",
    ):
        assert fact in message.body, fact
    assert PUBLIC + reverse("costs:finance") + "?department=claims" == DASHBOARD
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and f'href="{DASHBOARD}"' in html
    notice = BudgetAlertNotice.objects.get(alert=eighty)
    assert (notice.status, notice.attempts, notice.last_error) == ("sent", 1, "")
    assert notice.sent_at is not None


@pytest.mark.parametrize(
    ("edge", "extra", "says"),
    [
        ("continue", {}, "Continue: spending goes on and is recorded only."),
        ("ask", {}, "Ask: every step that would spend more waits for a person to approve it."),
        ("degrade", {"degrade_to_model": "gpt-4o-mini"},
         "Degrade: model calls switch to the cheaper model gpt-4o-mini; other spending steps are refused."),
    ],
)  # fmt: skip
def test_the_100_percent_message_says_what_happens_at_the_budgets_edge(
    people: Any, claims: Spender, check: Any, mailoutbox: list[Any], edge: str, extra: Any,
    says: str,
) -> None:  # fmt: skip
    runtime.budget_create(
        actor=people.admin, name="Claims AI spend", kind="spend", scope="department_month",
        department=people.claims, limit=Decimal("10"), edge=edge, **extra,
    )  # fmt: skip
    spend(claims, "10")
    *_, hundred = check()

    deliver_all(hundred)

    assert f"What happens now: {says}" in mailoutbox[0].body


def test_a_channels_signed_webhook_and_slack_message_carry_the_alert_and_the_link(
    people: Any, claims: Spender, budget: Budget, receiver: Receiver, check: Any
) -> None:
    hook = add_channel(
        people, "webhook", receiver.url("/hook"), secret=SECRET, department=people.claims
    )
    add_channel(people, "slack", receiver.url("/slack"))
    spend(claims, "8.25")
    _, eighty = check()  # 50 % crossed with it

    for notice in BudgetAlertNotice.objects.filter(alert=eighty, kind="channel"):
        assert tasks.budget_alert_notify(notice.pk) is True

    by_path = {request.path: request for request in receiver.requests}
    signed = by_path["/hook"]
    assert verify(hook.secret, signed.headers, signed.body)
    assert not verify("another-secret-entirely", signed.headers, signed.body)
    hook_notice = BudgetAlertNotice.objects.get(alert=eighty, channel=hook)
    assert signed.headers["X-Tether-Event"] == "budget.alert"
    assert signed.headers["X-Tether-Delivery"] == f"budget-alert-notice-{hook_notice.pk}"
    body = signed.json
    assert (body["type"], body["id"], body["url"]) == (
        "tether.budget.alert", f"budget-alert:{eighty.pk}", DASHBOARD,
    )  # fmt: skip
    assert body["summary"].startswith("Claims AI spend: $8.25 of $10.00 (82%) spent in ")
    payload = body["budget_alert"]
    assert {k: payload[k] for k in ("id", "threshold", "also_crossed", "department", "team")} == {
        "id": eighty.pk, "threshold": 80, "also_crossed": [50], "department": "claims",
        "team": None,
    }  # fmt: skip
    assert (payload["spent_usd"], payload["limit_usd"], payload["used_percent"]) == (
        "8.25", "10.00", 82,
    )  # fmt: skip
    assert payload["period"] == f"{timezone.now():%Y-%m}"
    assert payload["budget"] == {
        "slug": budget.slug, "name": "Claims AI spend", "scope": "department_month",
        "edge": "stop", "degrade_to_model": None,
    }  # fmt: skip
    assert payload["at_the_limit"] == "Stop: new spend is refused until the month ends."
    slack = by_path["/slack"].json
    assert DASHBOARD in slack["text"]
    [button] = slack["blocks"][1]["elements"]
    assert button["text"]["text"] == "Open the costs dashboard" and button["url"] == DASHBOARD


def test_a_failing_webhook_is_retried_then_given_up_with_its_error_recorded(
    people: Any, claims: Spender, budget: Budget, receiver: Receiver, check: Any
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), secret=SECRET)
    spend(claims, "5")
    [alert] = check()
    notice = BudgetAlertNotice.objects.get(alert=alert, kind="channel")
    receiver.status = 503

    with pytest.raises(RetryableDeliveryError):  # called directly, Celery re-raises it: a retry
        tasks.budget_alert_notify(notice.pk)

    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.sent_at) == ("failed", 1, None)
    assert "HTTP 503 from 127.0.0.1" in notice.last_error
    task = tasks.budget_alert_notify
    task.push_request(retries=task.max_retries)  # the worker's last retry
    try:
        assert task.run(notice.pk) is False
    finally:
        task.pop_request()

    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("gave_up", 2)
    assert "HTTP 503" in notice.last_error
    assert tasks.budget_alert_notify(notice.pk) is False  # given up: never sent again
    assert len(receiver.requests) == 2
    assert receiver.requests[0].json == receiver.requests[1].json  # the same body each time


def test_a_webhook_that_recovers_is_sent_on_the_retry_and_a_4xx_is_given_up_at_once(
    people: Any, claims: Spender, budget: Budget, receiver: Receiver, check: Any
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), secret=SECRET, name="Hook")
    add_channel(people, "slack", receiver.url("/gone"), name="Gone")
    spend(claims, "5")
    [alert] = check()
    hook = BudgetAlertNotice.objects.get(alert=alert, channel__name="Hook")
    gone = BudgetAlertNotice.objects.get(alert=alert, channel__name="Gone")

    receiver.status = 502
    with pytest.raises(RetryableDeliveryError):
        tasks.budget_alert_notify(hook.pk)
    receiver.status = 404
    assert tasks.budget_alert_notify(gone.pk) is False  # trying again would not help
    receiver.status = 200
    assert tasks.budget_alert_notify(hook.pk) is True

    hook.refresh_from_db()
    gone.refresh_from_db()
    assert (hook.status, hook.attempts, hook.last_error) == ("sent", 2, "")
    assert (gone.status, gone.attempts) == ("gave_up", 1) and "HTTP 404" in gone.last_error


def test_delivering_twice_sends_nothing_twice_and_a_disabled_channel_is_given_up(
    people: Any, claims: Spender, budget: Budget, receiver: Receiver, check: Any,
    mailoutbox: list[Any],
) -> None:  # fmt: skip
    add_channel(people, "slack", receiver.url("/slack"), name="Slack")
    later_off = add_channel(people, "slack", receiver.url("/off"), name="Off")
    spend(claims, "5")
    [alert] = check()
    channel_services.channel_set_enabled(actor=people.admin, channel=later_off, enabled=False)

    first = deliver_all(alert)
    again = deliver_all(alert)

    assert sorted(first) == [False, True, True] and again == [False, False, False]
    assert len(mailoutbox) == 1
    assert [r.path for r in receiver.requests] == ["/slack"]
    off = BudgetAlertNotice.objects.get(alert=alert, channel=later_off)
    assert off.status == "gave_up" and "disabled" in off.last_error


# --- the console ---------------------------------------------------------------------------------


def test_the_alerts_card_on_costs_shows_finance_the_alert_whom_it_told_and_how_that_went(
    people: Any, claims: Spender, budget: Budget, receiver: Receiver, check: Any
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), secret=SECRET, name="Claims hook")
    spend(claims, "3")
    spend(claims, "7.50")
    fifty, eighty, hundred = check()
    receiver.status = 503
    for notice in BudgetAlertNotice.objects.filter(alert=hundred):
        with contextlib.suppress(RetryableDeliveryError):  # the webhook: retried later
            tasks.budget_alert_notify(notice.pk)

    response = console_client(people.finance).get("/costs/")

    assert response.status_code == 200
    assert response.context["budget_alerts"] == [hundred, eighty, fifty]
    page = response.content.decode()
    card = page[page.index('id="budget-alerts"') : page.index('class="chart-grid"')]
    for text in (
        "Budget alerts", "Claims AI spend", "100%", "80%", "50%", "$10.50", "of $10.00", "105%",
        "fiona@example.com", "Sent", "Claims hook", "Failed (retrying)", "HTTP 503",
        "Told with the 100% alert, crossed at the same time",
    ):  # fmt: skip
        assert text in card, text


def test_the_alerts_card_says_what_to_do_when_there_is_no_alert(people: Any) -> None:
    response = console_client(people.finance).get("/costs/")

    page = response.content.decode()
    assert "No budget alert yet." in page
    assert reverse("runtime:department-budgets") in page


def test_an_outsider_and_another_departments_owner_see_no_alert(
    people: Any, claims: Spender, budget: Budget, check: Any
) -> None:
    spend(claims, "6")
    [alert] = check()

    assert alert_selectors.budget_alerts_for(user=people.finance) == [alert]
    assert alert_selectors.budget_alerts_for(user=people.owner) == [alert]  # claims' owner
    assert alert_selectors.budget_alerts_for(user=people.other_owner) == []  # payments' owner
    assert alert_selectors.budget_alerts_for(user=people.outsider) == []
    bob = console_client(people.other_owner).get("/costs/")
    assert bob.status_code == 200 and "Claims AI spend" not in bob.content.decode()
    assert "No budget alert yet." in bob.content.decode()
    oscar = console_client(people.outsider).get("/costs/")
    assert "Claims AI spend" not in oscar.content.decode()


def test_the_beat_runs_the_check_every_minute_and_drops_a_late_tick(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["budget-alerts"]
    assert entry == {"task": "costs.budget_alerts", "schedule": 60.0, "options": {"expires": 60}}
    assert tasks.budget_alerts.name == "costs.budget_alerts"


def test_the_beat_task_records_the_alerts_like_the_check(
    claims: Spender, budget: Budget, django_capture_on_commit_callbacks: Any
) -> None:
    spend(claims, "9")
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.budget_alerts() == 2
        assert tasks.budget_alerts() == 0
    assert BudgetAlertNotice.objects.get().alert.threshold == 80  # 50 % covered by it
    assert (
        AuditEvent.objects.filter(action="costs.budget.alert")
        .values("request_id")
        .distinct()
        .count()
        == 1
    )


def test_a_team_budget_alerts_on_its_teams_spend_and_the_card_names_the_team(
    people: Any, check: Any, mailoutbox: list[Any]
) -> None:
    in_team = spender(people, "ops-bot", people.claims, team=people.claims_ops)
    elsewhere = spender(people, "claims-intake", people.claims)
    team_budget = runtime.budget_create(
        actor=people.admin, name="Ops AI spend", kind="spend", scope="team_month",
        team=people.claims_ops, limit=Decimal("10"),
    )  # fmt: skip
    spend(elsewhere, "20")  # the department's other spend is not the team's
    assert check() == []
    spend(in_team, "5")

    [alert] = check()
    deliver_all(alert)

    assert (alert.budget, alert.threshold, alert.spent_usd) == (team_budget, 50, Decimal("5"))
    [message] = mailoutbox
    assert "Over: What the Claims Ops team (Claims) spent this calendar month" in message.body
    assert f"Open the costs dashboard: {DASHBOARD}" in message.body  # the team's department
    page = console_client(people.finance).get("/costs/").content.decode()
    assert "Ops AI spend" in page and "team · Claims" in page
