"""Monthly spend budgets alert at 50, 80 and 100 % of their limit: finance is emailed and the
department's notification channels are told, each message linking to the costs dashboard
(docs/costs-budgets.md).

The flow:

1. Every minute ``costs.budget_alerts`` calls :func:`budget_alerts_check`. For each enabled
   monthly spend budget over a department or a team it reads what was spent this month (the
   cost rollups' number, the one the runtime holds the budget to) and records each threshold
   crossed for the first time this month as a :class:`BudgetAlert`, audited. The alerts are
   unique per budget, month and threshold: a second worker's insert waits for the first's
   commit, then finds the row and records nothing. When several thresholds are crossed at
   once (30 % to 105 % in a minute) all are recorded and only the highest is announced; the
   others are marked as covered by it.
2. Once that commits, ``tasks.queue_alert_notices`` calls :func:`alert_notices_plan`: a
   :class:`BudgetAlertNotice` per finance person's address and per notification channel,
   unique per (alert, kind, target), so planning twice makes nothing twice.
3. ``costs.budget_alert_notify`` calls :func:`alert_notice_send` for one notice: it claims the
   row with a conditional UPDATE, sends, and records the outcome in the same transaction, so
   Celery delivering the task twice sends nothing twice.

The sending itself is the approvals notifications' (``apps.approvals.notify``): the same
email, Slack message shape, webhook signature, timeouts and retry rules as the kill switch's.
"""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.urls import reverse
from django.utils import timezone

from apps.accounts.constants import Role
from apps.accounts.models import Department, RoleAssignment, User
from apps.approvals.models import ChannelKind, DeliveryStatus, NotificationChannel
from apps.approvals.notify import (
    DeliveryError,
    Notice,
    delivery_attempt,
    delivery_row_give_up,
    department_channels,
    email_addresses,
    json_bytes,
    post_json,
    public_url,
    reachable_people,
    send_email,
    signed_headers,
    slack_payload,
)
from apps.audit.services import Actor, audit_record
from apps.runtime.constants import BudgetEdge, BudgetKind, BudgetScope
from apps.runtime.models import Budget

from .models import AlertNoticeKind, BudgetAlert, BudgetAlertNotice, MonthCost
from .rollups import month_spend

logger = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)  # per cent of the limit, ascending
# The monthly budgets held to recorded spend: a department's, and a team's.
MONTHLY_SCOPES = (BudgetScope.DEPARTMENT_MONTH.value, BudgetScope.TEAM_MONTH.value)
EVENT = "budget.alert"  # the X-Tether-Event header; bodies say tether.budget.alert
EVENT_TYPE = f"tether.{EVENT}"
EMAIL_TEMPLATE = "costs/notifications/email"
LINK_TEXT = "Open the costs dashboard"
AUDIT_ACTION = "costs.budget.alert"
BUDGET_TARGET = "budget"  # the runtime's budget events target this type too
# An announced alert with no notice yet (the worker died between its commit and the planning)
# is planned again by the checks that follow: from REPLAN_AFTER after it was recorded (its own
# worker plans it within milliseconds; sooner, a second worker would queue the same notices
# again — harmless, the claim sends each once, but noisy) until REPLAN_WINDOW after.
REPLAN_AFTER = timedelta(seconds=30)
REPLAN_WINDOW = timedelta(minutes=10)
CENT = Decimal("0.01")

# What the runtime does once a budget's limit is reached (apps/runtime/decisions.py).
EDGE_EFFECTS: dict[str, str] = {
    BudgetEdge.STOP: "Stop: new spend is refused until the month ends.",
    BudgetEdge.CONTINUE: "Continue: spending goes on and is recorded only.",
    BudgetEdge.ASK: "Ask: every step that would spend more waits for a person to approve it.",
    BudgetEdge.DEGRADE: "Degrade: model calls switch to the cheaper model {model}; "
    "other spending steps are refused.",
}
# The same, short, for the headline of a 100 % message.
EDGE_HEADLINES: dict[str, str] = {
    BudgetEdge.STOP: "new spend is refused",
    BudgetEdge.CONTINUE: "spending goes on, recorded only",
    BudgetEdge.ASK: "new spend needs a person's approval",
    BudgetEdge.DEGRADE: "model calls switch to {model}",
}


# --- what a budget is over -----------------------------------------------------------------------


def budget_related(prefix: str = "") -> list[str]:
    """The ``select_related`` paths of a budget's department and team."""
    return [f"{prefix}department", f"{prefix}team__department"]


def budget_department(budget: Budget) -> Department | None:
    """The department whose spend and channels a budget is about (a team budget's: the
    team's department)."""
    team = budget.team
    return team.department if team is not None else budget.department


def over_name(budget: Budget) -> str:
    """``the Claims department``, or for a team budget ``the Claims Ops team (Claims)``."""
    team = budget.team
    if team is not None:
        return f"the {team.name} team ({team.department.name})"
    return f"the {budget.department.name} department" if budget.department is not None else ""


def monthly_budgets() -> QuerySet[Budget]:
    """The enabled monthly spend budgets over a department or a team."""
    return (
        Budget.objects.filter(enabled=True, kind=BudgetKind.SPEND, scope__in=MONTHLY_SCOPES)
        .select_related(*budget_related())
        .order_by("pk")
    )


def month_of(moment: datetime) -> date:
    return timezone.localtime(moment, UTC).date().replace(day=1)


def month_spent(budget: Budget, period: date) -> Decimal:
    """What the budget's department (or team) spent in the month ``period`` starts: this
    month's from the rollups' shared reader (what the runtime holds the budget to); another
    month's (a check run with an earlier ``now``) from that month's rollup rows."""
    team = budget.team
    department_id = team.department_id if team is not None else budget.department_id or 0
    team_id = team.pk if team is not None else None
    if period == month_of(timezone.now()):
        return month_spend(department_id=department_id, team_id=team_id)
    rows = MonthCost.objects.filter(month=period, department_id=department_id)
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    return rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)


def crossed_thresholds(spent: Decimal, limit: Decimal) -> list[int]:
    """The thresholds ``spent`` has reached, ascending (none for a limit that is not positive)."""
    if limit <= 0:
        return []
    return [threshold for threshold in THRESHOLDS if spent * 100 >= limit * threshold]


# --- the check (the minute job) ------------------------------------------------------------------


def budget_alerts_check(*, now: datetime | None = None) -> list[BudgetAlert]:
    """Record the thresholds crossed this month for the first time, and have the highest one
    of each budget announced once the record commits; the alerts recorded now.

    Idempotent and safe to run twice at once: the unique (budget, period, threshold) decides
    who records an alert, and only the one who recorded it announces it.
    """
    now = now or timezone.now()
    period = month_of(now)
    budgets = list(monthly_budgets())
    known = set(
        BudgetAlert.objects.filter(period=period, budget__in=[b.pk for b in budgets]).values_list(
            "budget_id", "threshold"
        )
    )
    recorded: list[BudgetAlert] = []
    for budget in budgets:
        spent = month_spent(budget, period)
        crossed = crossed_thresholds(spent, budget.limit)
        if all((budget.pk, threshold) in known for threshold in crossed):
            continue  # the usual minute: nothing new
        recorded += _record_crossings(budget, period, crossed, spent, now)
    _replan_stranded(now, exclude={alert.pk for alert in recorded})
    return recorded


def _record_crossings(
    budget: Budget, period: date, crossed: list[int], spent: Decimal, now: datetime
) -> list[BudgetAlert]:
    """Record the new ones among ``crossed`` (ascending, so two workers insert in the same
    order), mark all but the highest new one covered by it, audit each, and announce it."""
    with transaction.atomic():
        new: list[BudgetAlert] = []
        for threshold in crossed:
            alert, made = BudgetAlert.objects.get_or_create(
                budget=budget,
                period=period,
                threshold=threshold,
                defaults={"spent_usd": spent, "limit_usd": budget.limit, "created_at": now},
            )
            if made:
                new.append(alert)
        if not new:
            return []
        announced = new[-1]
        covered = new[:-1]
        if covered:
            BudgetAlert.objects.filter(pk__in=[a.pk for a in covered]).update(covered_by=announced)
            for alert in covered:
                alert.covered_by = announced
        for alert in new:
            _audit_alert(budget, alert)
        alert_id = announced.pk

        def announce() -> None:  # named: robust on_commit logs its __qualname__
            from . import tasks

            tasks.queue_alert_notices(alert_id)

        transaction.on_commit(announce, robust=True)
    return new


def _audit_alert(budget: Budget, alert: BudgetAlert) -> None:
    covered_by = alert.covered_by
    message = (
        f"{budget.name}: {alert.threshold}% of the monthly limit reached "
        f"(${money(alert.spent_usd)} of ${money(alert.limit_usd)} in {alert.period:%B %Y})"
    )
    if covered_by is not None:
        message += f"; told with the {covered_by.threshold}% alert crossed at the same time"
    audit_record(
        actor=Actor.system("costs"),
        action=AUDIT_ACTION,
        target_type=BUDGET_TARGET,
        target_id=budget.pk,
        target_repr=budget.slug,
        after={
            "alert": alert.pk,
            "threshold": alert.threshold,
            "period": f"{alert.period:%Y-%m}",
            "spent_usd": str(cents(alert.spent_usd)),
            "limit_usd": str(cents(alert.limit_usd)),
            "announced": covered_by is None,
        },
        message=message,
    )


def _replan_stranded(now: datetime, *, exclude: set[int]) -> None:
    """Plan again the recent announced alerts that have no notice: their planning was lost
    (a worker died after the alert committed). Planning is idempotent, so an alert whose
    planning is merely running elsewhere right now gains nothing twice."""
    stranded = (
        BudgetAlert.objects.filter(
            covered_by__isnull=True,
            created_at__gte=now - REPLAN_WINDOW,
            created_at__lte=now - REPLAN_AFTER,
            notices__isnull=True,
        )
        .exclude(pk__in=exclude)
        .values_list("pk", flat=True)
    )
    from . import tasks

    for alert_id in stranded:
        try:
            tasks.queue_alert_notices(alert_id)
        except Exception:  # the next minute tries again; the other alerts must not wait
            logger.warning(
                "costs: planning the notices of alert %s failed", alert_id, exc_info=True
            )


# --- who is told ---------------------------------------------------------------------------------


def finance_people(budget: Budget) -> list[User]:
    """Whom to email: active people with an address holding the finance role over the budget's
    department (or team) or across the organisation. Nobody reachable: the organisation-wide
    admins (superusers included) instead, so an alert is never told to no person at all."""
    department, team = budget_department(budget), budget.team
    scope = Q(department__isnull=True, team__isnull=True)
    if department is not None:
        scope |= Q(department_id=department.pk)
    if team is not None:
        scope |= Q(team_id=team.pk)
    finance = RoleAssignment.objects.filter(scope, role=Role.FINANCE).values_list(
        "user_id", flat=True
    )
    people = reachable_people(set(finance))
    if people:
        return people
    admins = RoleAssignment.objects.filter(
        role=Role.ADMIN, department__isnull=True, team__isnull=True
    ).values_list("user_id", flat=True)
    superusers = User.objects.filter(is_superuser=True).values_list("pk", flat=True)
    return reachable_people(set(admins) | set(superusers))


def alert_channels(budget: Budget) -> QuerySet[NotificationChannel]:
    """The enabled channels of the budget's department and the organisation-wide ones."""
    department = budget_department(budget)
    return department_channels(department.pk if department is not None else None)


# --- planning ------------------------------------------------------------------------------------


def alert_notices_plan(*, alert_id: int) -> list[int]:
    """Make the notices of one announced alert; the ids of those not yet sent. A repeated call
    makes nothing new (the unique constraint) and returns the notices still queued; nothing
    for an alert that no longer exists or that a higher one covers."""
    alert = (
        BudgetAlert.objects.select_related(*budget_related("budget__"))
        .filter(pk=alert_id, covered_by__isnull=True)
        .first()
    )
    if alert is None:
        return []
    notices = [
        BudgetAlertNotice(alert=alert, kind=AlertNoticeKind.EMAIL, target=person.email.strip())
        for person in finance_people(alert.budget)
    ]
    notices += [
        BudgetAlertNotice(
            alert=alert, kind=AlertNoticeKind.CHANNEL, target=str(channel.pk), channel=channel
        )
        for channel in alert_channels(alert.budget)
    ]
    BudgetAlertNotice.objects.bulk_create(notices, ignore_conflicts=True)
    waiting = BudgetAlertNotice.objects.filter(alert=alert, status=DeliveryStatus.QUEUED)
    return list(waiting.order_by("pk").values_list("pk", flat=True))


# --- the message ---------------------------------------------------------------------------------


def cents(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def money(value: Decimal) -> str:
    """``412.50``, ``12,345.00``."""
    return f"{cents(value):,.2f}"


def dollars(value: Decimal) -> str:
    """Whole dollars: ``690``, ``12,346``."""
    return f"{Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP):,}"


def forecast(spent: Decimal, period: date, at: datetime) -> Decimal:
    """Where the month ends at its pace so far: the spend to ``at``'s day, per day elapsed
    (that day included), times the month's days — the dashboard's budget burn forecast. At
    a moment past the month, the month's spend."""
    days = calendar.monthrange(period.year, period.month)[1]
    day = timezone.localtime(at, UTC).date()
    if month_of(at) != period:
        return cents(spent)
    elapsed = (day - period).days + 1
    return cents(spent / elapsed * days)


def dashboard_link(budget: Budget) -> str:
    """The costs dashboard filtered to the budget's department, absolute."""
    department = budget_department(budget)
    query = f"?department={department.slug}" if department is not None else ""
    return public_url(reverse("costs:finance") + query)


def edge_effect(budget: Budget) -> str:
    model = budget.degrade_to_model or "set on the budget"
    return EDGE_EFFECTS.get(budget.edge, str(budget.edge)).format(model=model)


def _when(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def alert_message(alert: BudgetAlert) -> Notice:
    """What every channel says about an alert, e.g. the headline "Claims AI spend: $412.50 of
    $500.00 (82%) spent in December 2026 — forecast $690 by month end", then the facts: the
    budget, what it is over, the threshold (and those crossed with it), the forecast, what
    happens at the limit, when; and the link to the dashboard."""
    budget = alert.budget
    spent, limit = alert.spent_usd, alert.limit_usd
    percent = alert.used_percent
    month = f"{alert.period:%B %Y}"
    ahead = forecast(spent, alert.period, alert.created_at)
    headline = (
        f"{budget.name}: ${money(spent)} of ${money(limit)} ({percent}%) spent in {month}"
        f" — forecast ${dollars(ahead)} by month end"
    )
    if alert.threshold >= 100:
        short = EDGE_HEADLINES.get(budget.edge, "")
        headline += f"; {short.format(model=budget.degrade_to_model or 'a cheaper model')}"
    also = covered_thresholds(alert)
    reached = f"{alert.threshold}% of the monthly limit"
    if also:
        reached += " (" + ", ".join(f"{t}%" for t in also) + " crossed at the same time)"
    last_day = alert.period.replace(
        day=calendar.monthrange(alert.period.year, alert.period.month)[1]
    )
    facts = [
        ("Budget", f"{budget.name} ({budget.slug})"),
        ("Over", f"What {over_name(budget)} spent this calendar month (UTC)"),
        ("Reached", reached),
        ("Spent", f"${money(spent)} of ${money(limit)} ({percent}%) in {month}"),
        ("Forecast", f"${money(ahead)} by {last_day.day} {last_day:%B}, at the pace so far"),
        (
            "What happens now" if alert.threshold >= 100 else "At the limit",
            edge_effect(budget),
        ),
        ("Recorded at", timezone.localtime(alert.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")),
    ]
    return Notice(
        event=EVENT,
        headline=headline,
        url=dashboard_link(budget),
        event_id=f"budget-alert:{alert.pk}",
        facts=facts,
    )


def covered_thresholds(alert: BudgetAlert) -> list[int]:
    """The lower thresholds crossed in the same check, told by this alert's message."""
    return sorted(alert.covers.values_list("threshold", flat=True))


def alert_payload(alert: BudgetAlert) -> dict[str, Any]:
    """The alert as JSON, for the generic webhooks. Amounts are strings of US dollars to the
    cent (exact, as the chargeback export's)."""
    budget = alert.budget
    department, team = budget_department(budget), budget.team
    return {
        "id": alert.pk,
        "threshold": alert.threshold,
        "also_crossed": covered_thresholds(alert),
        "period": f"{alert.period:%Y-%m}",
        "budget": {
            "slug": budget.slug,
            "name": budget.name,
            "scope": budget.scope,
            "edge": budget.edge,
            "degrade_to_model": budget.degrade_to_model or None,
        },
        "department": department.slug if department is not None else None,
        "team": team.slug if team is not None else None,
        "spent_usd": str(cents(alert.spent_usd)),
        "limit_usd": str(cents(alert.limit_usd)),
        "used_percent": alert.used_percent,
        "forecast_usd": str(forecast(alert.spent_usd, alert.period, alert.created_at)),
        "at_the_limit": edge_effect(budget),
        "crossed_at": _when(alert.created_at),
    }


def webhook_payload(alert: BudgetAlert, notice: Notice) -> dict[str, Any]:
    """A channel's generic webhook body, shaped like the approvals' and the kill switch's
    (``type``, ``id`` to deduplicate on, ``url``, ``summary``), the alert under
    ``budget_alert``."""
    return {
        "type": EVENT_TYPE,
        "id": notice.event_id,
        "budget_alert": alert_payload(alert),
        "url": notice.url,
        "summary": notice.headline,
    }


# --- sending notices -----------------------------------------------------------------------------


def alert_notice_send(*, notice_id: int) -> bool:
    """Send one notice once (``delivery_attempt``: claimed, sent, recorded; a retryable
    failure is raised for the task to retry)."""
    return delivery_attempt(
        BudgetAlertNotice,
        notice_id,
        load=lambda queryset: queryset.select_related(
            "channel", *budget_related("alert__budget__")
        ),
        send=_send_notice,
        describe=lambda n: f"costs: budget alert notice {n.pk} ({n.kind} {n.target})",
    )


def _send_notice(notice: BudgetAlertNotice) -> None:
    alert = notice.alert
    message = alert_message(alert)
    if notice.kind == AlertNoticeKind.EMAIL:
        send_email([notice.target], message, separately=False, template=EMAIL_TEMPLATE)
        return
    channel = notice.channel
    if channel is None:
        raise DeliveryError("The channel was deleted before this was sent.", retryable=False)
    if not channel.enabled:
        raise DeliveryError("The channel was disabled before this was sent.", retryable=False)
    if channel.kind == ChannelKind.EMAIL:
        send_email(
            email_addresses(channel.target), message, separately=False, template=EMAIL_TEMPLATE
        )
    elif channel.kind == ChannelKind.SLACK:
        post_json(channel.target, json_bytes(slack_payload(message, link_text=LINK_TEXT)), {})
    elif channel.kind == ChannelKind.WEBHOOK:
        body = json_bytes(webhook_payload(alert, message))
        headers = signed_headers(
            channel.secret, body, event=EVENT, delivery=f"budget-alert-notice-{notice.pk}"
        )
        post_json(channel.target, body, headers)
    else:
        raise DeliveryError(f"Unknown channel kind {channel.kind!r}.", retryable=False)


def alert_notice_give_up(*, notice_id: int) -> bool:
    """After the last retry: a notice still failing is given up (its error is kept)."""
    return delivery_row_give_up(BudgetAlertNotice, notice_id)
