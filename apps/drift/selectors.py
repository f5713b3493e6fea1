"""Drift's reads for the console and the API, each scoped by the requesting user: alerts of
the agents they may see, an alert's chart and change events, two versions side by side."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, QuerySet
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import User
from apps.common.charts import Chart, figure
from apps.registry.models import READ, Agent, AgentVersion
from apps.registry.selectors import can_change_agent

from .changes import ChangeEvent, change_events
from .constants import LIVE_STATUSES, METRIC_KINDS, AlertStatus, Metric, MetricKind
from .describe import TESTS, alert_headline, subject_words, value_words
from .detectors import Thresholds
from .models import Baseline, DriftAlert, RunSample
from .windows import SAMPLE_COLUMNS, Summary, compare, indicator

CHART_DAYS = 14
HOURLY_DAYS = 3  # an onset this recent is charted by the hour, over these days
POINT_MIN_RUNS = 5  # a window with fewer runs is too noisy to plot
UNIT_NAMES: dict[str, str] = {Metric.COST: "US dollars", Metric.LATENCY: "milliseconds"}


def drift_alerts(
    *, user: User, status: str = "live", severity: str = "", environment: str = "", agent: str = ""
) -> QuerySet[DriftAlert]:
    """Alerts of agents the user may read; ``live`` (open, acknowledged, snoozed), a status,
    or ``all``; of one severity, environment or agent (its slug) when given."""
    alerts = DriftAlert.objects.filter(agent__in=Agent.objects.for_user(user, READ))
    if severity:
        alerts = alerts.filter(severity=severity)
    if environment:
        alerts = alerts.filter(environment=environment)
    if agent:
        alerts = alerts.filter(agent__slug=agent)
    if status == "live":
        alerts = alerts.filter(status__in=LIVE_STATUSES)
    elif status in AlertStatus.values:
        alerts = alerts.filter(status=status)
    return alerts.select_related("agent", "version").order_by("-last_seen_at", "-pk")


def drift_alert_get(*, user: User, alert_id: int) -> DriftAlert:
    alert = (
        drift_alerts(user=user, status="all")
        .select_related("baseline__version")
        .filter(pk=alert_id)
        .first()
    )
    if alert is None:
        raise Http404("No such drift alert.")
    return alert


def can_act_on(user: User, alert: DriftAlert) -> bool:
    """Acknowledge, snooze, resolve, roll back, re-baseline: the agent's owner or an admin."""
    return can_change_agent(user, alert.agent)


def live_alert_counts(*, user: User) -> dict[str, int]:
    """Live alerts per severity."""
    rows = drift_alerts(user=user).order_by().values("severity").annotate(n=Count("id"))
    return {row["severity"]: row["n"] for row in rows}


# --- an alert's page -------------------------------------------------------------------------


@dataclass
class AlertView:
    alert: DriftAlert
    headline: str
    test_words: str
    chart: Chart
    shares: list[tuple[str, str, str]]
    events: list[ChangeEvent]
    previous_version: AgentVersion | None


def _buckets(rows: list[tuple[Any, ...]], *, hours: int) -> dict[datetime, list[tuple[Any, ...]]]:
    """Runs by the window of ``hours`` (a divisor of 24, or 24) they ended in."""
    buckets: dict[datetime, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        at = row[0].replace(minute=0, second=0, microsecond=0)
        buckets[at.replace(hour=at.hour - at.hour % hours)].append(row)
    return buckets


def _bucket_hours(runs: int, span: timedelta, *, hourly: bool) -> int:
    """The window a version's series is drawn in: an hour when it runs often enough to fill
    one, else longer (a quiet version would otherwise leave every hour out)."""
    if not hourly:
        return 24
    per_hour = runs / max(span.total_seconds() / 3600, 1)
    return next((h for h in (1, 3, 6, 12) if per_hour * h >= 2 * POINT_MIN_RUNS), 24)


def _point(metric: str, key: str, subject: str, rows: list[tuple[Any, ...]]) -> float | None:
    """The metric of a bucket of runs, as the alert measures it."""
    values = [
        v for v in (indicator(metric, key, subject, row[1:]) for row in rows) if v is not None
    ]
    if not values:
        return None
    if METRIC_KINDS.get(metric) == MetricKind.CONTINUOUS:
        return statistics.median(values)
    return statistics.fmean(values)


def alert_chart(alert: DriftAlert, *, now: datetime | None = None) -> Chart:
    """The metric per version against the baseline's value: by the hour over the last three
    days for a recent onset, else by the day over the last two weeks."""
    end = max(now or timezone.now(), alert.last_seen_at)
    hourly = end - alert.onset_at < timedelta(days=HOURLY_DAYS)
    start = end - timedelta(days=HOURLY_DAYS if hourly else CHART_DAYS)
    rows = list(
        RunSample.objects.filter(
            agent_id=alert.agent_id, environment=alert.environment, ended_at__gte=start,
            ended_at__lte=end,
        )
        .order_by("ended_at")
        .values_list("ended_at", *SAMPLE_COLUMNS, "version_id")
    )  # fmt: skip
    numbers = dict(AgentVersion.objects.filter(agent_id=alert.agent_id).values_list("pk", "number"))
    per_version: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        per_version[row[-1]].append(row[:-1])
    what = subject_words(alert.metric, alert.key, alert.subject)
    traces: list[dict[str, Any]] = []
    table: list[list[Any]] = []
    percent = METRIC_KINDS.get(alert.metric) != MetricKind.CONTINUOUS
    scale = 100 if percent else 1
    for version_id, version_rows in sorted(
        per_version.items(), key=lambda kv: numbers.get(kv[0], 0)
    ):
        name = f"v{numbers.get(version_id, '?')}"
        hours = _bucket_hours(len(version_rows), end - start, hourly=hourly)
        points = sorted(_buckets(version_rows, hours=hours).items())
        xs, ys = [], []
        for at, bucket in points:
            value = _point(alert.metric, alert.key, alert.subject, bucket)
            if value is not None and len(bucket) >= POINT_MIN_RUNS:
                xs.append(at.isoformat())
                ys.append(round(value * scale, 4))
                table.append(
                    [
                        f"{at:%Y-%m-%d %H:%M} +{hours} h",
                        name,
                        len(bucket),
                        value_words(alert.metric, value),
                    ]
                )
        traces.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": xs, "y": ys})
    baseline_y = round(alert.baseline_value * scale, 4)
    if rows:
        traces.append({
            "type": "scatter", "mode": "lines", "name": "baseline",
            "x": [start.isoformat(), end.isoformat()], "y": [baseline_y, baseline_y],
            "line": {"dash": "dash", "color": "#6b7280"},
        })  # fmt: skip
    unit = "per cent of runs" if percent else UNIT_NAMES.get(alert.metric, "value")
    chart = Chart(
        key="metric",
        title=f"{what[0].upper()}{what[1:]}, "
        + ("the last three days" if hourly else "daily, the last two weeks"),
        unit=unit, columns=["Window (UTC)", "Version", "Runs", "Value"], rows=table,
        figure=figure(traces, x_title="Time (UTC)", y_title=unit.capitalize()),
        empty="No runs of this agent in this environment in the last two weeks.",
        note="The dashed line is the baseline, the dotted one the onset. Each point is a "
        f"version's runs in one window (an hour, or longer for a quiet version); windows with "
        f"fewer than {POINT_MIN_RUNS} runs are left out.",
    )  # fmt: skip
    chart.figure["layout"]["shapes"] = [{
        "type": "line", "xref": "x", "yref": "paper", "x0": alert.onset_at.isoformat(),
        "x1": alert.onset_at.isoformat(), "y0": 0, "y1": 1, "line": {"color": "#b91c1c", "dash": "dot"},
    }]  # fmt: skip
    chart.figure["layout"]["yaxis"]["rangemode"] = "normal"
    return chart


def alert_view(alert: DriftAlert) -> AlertView:
    shares = [
        (label, value_words(alert.metric, before), value_words(alert.metric, now))
        for label, (before, now) in sorted(alert.shares.items(), key=lambda kv: -kv[1][1])
    ]
    test = TESTS.get(alert.test, alert.test)
    test_words = f"{test}, statistic {alert.statistic:,.2f}, p = {alert.p_value:.2g}"
    if alert.psi is not None:
        test_words += f", PSI {alert.psi:.3f}"
    test_words += (
        f"; {alert.current_n:,} runs in the {alert.get_window_display().lower()} against a "
        f"baseline of {alert.baseline_n:,} (v{alert.baseline.version.number}'s "
        f"{alert.baseline.source} baseline)"
    )
    previous = (
        alert.agent.versions.filter(number__lt=alert.version.number).order_by("-number").first()
    )
    return AlertView(
        alert=alert, headline=alert_headline(alert), test_words=test_words,
        chart=alert_chart(alert), shares=shares,
        events=change_events(alert.agent, alert.onset_at), previous_version=previous,
    )  # fmt: skip


# --- two versions side by side -----------------------------------------------------------------


@dataclass
class VersionColumn:
    version: AgentVersion
    runs: int
    rows: dict[str, str]


@dataclass
class Comparison:
    agent: Agent
    environment: str
    days: int
    left: VersionColumn
    right: VersionColumn
    labels: list[tuple[str, str]]  # (row key, label)
    differences: dict[str, str]  # row key → what the detectors say

    @property
    def table(self) -> list[tuple[str, str, str, str]]:
        """(label, reference value, compared value, drift or "") per row."""
        return [
            (label, self.left.rows.get(key, "—"), self.right.rows.get(key, "—"),
             self.differences.get(key, ""))
            for key, label in self.labels
        ]  # fmt: skip


def _column(version: AgentVersion, summary: Summary) -> tuple[VersionColumn, list[tuple[str, str]]]:
    rows: dict[str, str] = {}
    labels: list[tuple[str, str]] = []

    def put(key: str, label: str, value: str) -> None:
        rows[key] = value
        labels.append((key, label))

    def share(hits: int, of: int) -> str:
        return f"{hits / of * 100:.1f}%" if of else "—"

    def median(name: str) -> float | None:
        values = summary.values.get(name, [])
        return statistics.median(values) if values else None

    put("runs", "Runs", f"{summary.runs:,}")
    for label in sorted(summary.outcomes):
        put(f"outcome:{label}", f"Outcome “{label}”", share(summary.outcomes[label], summary.runs))
    put(Metric.ERROR_RATE, "Error rate", share(summary.failures, summary.runs))
    put(Metric.DENIAL_RATE, "Denial rate", share(summary.denials, summary.decisions))
    put(Metric.ASK_RATE, "Ask rate", share(summary.asks, summary.decisions))
    put(
        Metric.REJECTION_RATE,
        "Approval rejection rate",
        share(summary.rejections, summary.approvals),
    )
    for metric, name in (
        (Metric.TOKENS, "tokens"),
        (Metric.COST, "cost"),
        (Metric.LATENCY, "latency"),
    ):
        value = median(name)
        put(
            metric,
            f"Median {Metric(metric).label.lower()}",
            "—" if value is None else value_words(metric, value),
        )
    calls = sum(summary.tools.values())
    for tool in sorted(summary.tools):
        put(f"tool:{tool}", f"Calls to {tool}", share(summary.tools[tool], calls))
    for name in sorted(n for n in summary.values if n.startswith("metric:")):
        value = median(name)
        put(name, f"Median {name[7:]}", "—" if value is None else f"{value:,.4g}")
    return VersionColumn(version=version, runs=summary.runs, rows=rows), labels


def version_comparison(
    *, agent: Agent, environment: str, left: AgentVersion, right: AgentVersion, days: int = 30,
    now: datetime | None = None,
) -> Comparison:  # fmt: skip
    """Each version's metrics over its runs of the last ``days`` days in ``environment``, and
    which differences the detectors would call a drift (left taken as the reference)."""
    since = (now or timezone.now()) - timedelta(days=days)
    summaries = {}
    for version in (left, right):
        rows = RunSample.objects.filter(
            agent_id=agent.pk, environment=environment, version_id=version.pk, ended_at__gte=since
        ).values_list(*SAMPLE_COLUMNS)
        summaries[version.pk] = Summary.of(rows)
    left_col, left_labels = _column(left, summaries[left.pk])
    right_col, right_labels = _column(right, summaries[right.pk])
    labels = list(dict.fromkeys(left_labels + right_labels))
    differences = {}
    for metric, key, finding in compare(
        summaries[left.pk], summaries[right.pk], Thresholds.from_settings()
    ):
        row = f"metric:{key}" if key else metric
        if metric == Metric.OUTCOME:
            row = f"outcome:{finding.subject}"
        elif metric == Metric.TOOL_MIX:
            row = f"tool:{finding.subject}"
        differences[row] = (
            f"{finding.severity}: {TESTS.get(finding.test, finding.test)}, p = {finding.p_value:.2g}"
        )
    return Comparison(
        agent=agent, environment=environment, days=days, left=left_col, right=right_col,
        labels=labels, differences=differences,
    )  # fmt: skip


def baselines_of(agent: Agent) -> QuerySet[Baseline]:
    return agent.baselines.select_related("version").order_by("environment", "-created_at")[:50]


def held_versions(agent: Agent) -> set[int]:
    """Versions whose own baseline a live drift alert holds back."""
    live = DriftAlert.objects.filter(agent=agent, status__in=LIVE_STATUSES)
    return set(live.values_list("version_id", flat=True))
