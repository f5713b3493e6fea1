"""Drift detection's writes: the cycle (collect samples, advance baselines, detect, record
alerts) and what people do with alerts and baselines (docs/drift.md)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Min
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError
from apps.registry.models import Agent, AgentVersion

from .changes import change_events, suspected_change
from .collect import samples_collect
from .constants import (
    LIVE_STATUSES,
    AlertStatus,
    BaselineSource,
    BaselineState,
    Severity,
    Window,
)
from .describe import alert_headline
from .detectors import Finding, Thresholds, onset_index
from .models import Baseline, DriftAlert, RunSample
from .windows import SAMPLE_COLUMNS, Summary, compare, indicator

logger = logging.getLogger(__name__)
SYSTEM = Actor.system("drift")
ONSET_LOOKBACK = timedelta(days=7)
SNOOZE_MAX = timedelta(days=30)
Stream = tuple[int, str]  # (agent id, environment)


@dataclass(frozen=True)
class CycleReport:
    sampled: int
    baselines_set: int
    streams: int
    raised: list[DriftAlert]
    updated: list[DriftAlert]


def drift_cycle(*, now: datetime | None = None) -> CycleReport:
    """One run of the drift job: sample the runs that ended, compare every serving version's
    last hour and last day with its reference, raise or update an alert per drift, and set the
    baselines that are complete. Safe to run twice at once (every write is claimed)."""
    now = now or timezone.now()
    sampled = samples_collect(now=now)
    # Detect before setting baselines: a new version's first runs are compared with the
    # reference it inherits before they may become its own (a drift holds that back).
    streams, raised, updated = drift_detect(now=now)
    baselines_set = baselines_advance(now=now)
    return CycleReport(sampled, baselines_set, streams, raised, updated)


# --- baselines -------------------------------------------------------------------------------


def baselines_advance(*, now: datetime) -> int:
    """Start a forming baseline for every version seen serving without one, and set those
    whose window is complete (first N runs or K days) unless a live drift alert on the version
    holds it back (a drifted version must not become its own reference). How many were set."""
    since = now - timedelta(days=settings.DRIFT_LOOKBACK_DAYS)
    serving = (
        RunSample.objects.filter(ended_at__gte=since)
        .values_list("agent_id", "environment", "version_id")
        .annotate(first=Min("ended_at"))
    )
    known = set(
        Baseline.objects.filter(source=BaselineSource.AUTOMATIC)
        .exclude(state=BaselineState.RETIRED)
        .values_list("agent_id", "environment", "version_id")
    )
    new = [
        _forming(agent_id, env, version_id, first)
        for agent_id, env, version_id, first in serving
        if (agent_id, env, version_id) not in known
    ]
    Baseline.objects.bulk_create(new, ignore_conflicts=True)
    held = set(
        DriftAlert.objects.filter(status__in=LIVE_STATUSES).values_list(
            "agent_id", "environment", "version_id"
        )
    )
    # A version in a stream where another version's baseline is set inherits that one: its
    # own may be set only once a detection compared it with it (else a backlog sampled in one
    # cycle would set a drifted version's baseline from its drifted runs, unseen). Older
    # versions go first, so a backlog's first version is set before its successors are seen.
    with_set = _streams_with_set_baselines()
    count = 0
    forming = Baseline.objects.filter(state=BaselineState.FORMING).order_by("version_id", "pk")
    for baseline in forming.iterator():
        stream = (baseline.agent_id, baseline.environment)
        inherits = bool(with_set.get(stream, set()) - {baseline.version_id})
        hold = (*stream, baseline.version_id) in held or (inherits and baseline.compared_at is None)
        if _baseline_try_set(baseline, now, hold=hold):
            with_set.setdefault(stream, set()).add(baseline.version_id)
            count += 1
    return count


def _streams_with_set_baselines() -> dict[Stream, set[int]]:
    """Per stream, the versions whose baseline is set."""
    found: dict[Stream, set[int]] = {}
    rows = Baseline.objects.filter(state=BaselineState.SET).values_list(
        "agent_id", "environment", "version_id"
    )
    for agent_id, env, version_id in rows:
        found.setdefault((agent_id, env), set()).add(version_id)
    return found


def _forming(
    agent_id: int, env: str, version_id: int, start: datetime, compared_at: datetime | None = None
) -> Baseline:
    return Baseline(
        agent_id=agent_id, environment=env, version_id=version_id,
        source=BaselineSource.AUTOMATIC, target_runs=settings.DRIFT_BASELINE_RUNS,
        target_days=settings.DRIFT_BASELINE_DAYS, window_start=start, set_by_name=SYSTEM.name,
        compared_at=compared_at,
    )  # fmt: skip


def _window_rows(baseline: Baseline, end: datetime, limit: int) -> list[tuple[Any, ...]]:
    return list(
        RunSample.objects.filter(
            agent_id=baseline.agent_id,
            environment=baseline.environment,
            version_id=baseline.version_id,
            ended_at__gte=baseline.window_start,
            ended_at__lte=end,
        )
        .order_by("ended_at")
        .values_list("ended_at", *SAMPLE_COLUMNS)[:limit]
    )


def _baseline_try_set(baseline: Baseline, now: datetime, *, hold: bool) -> int:
    """Set a complete baseline: its first ``target_runs`` runs, or its first ``target_days``
    days -- stretched past them, for a quiet agent, until it holds the fewest runs a detector
    compares (a smaller baseline would never alert). Count the runs of one still forming."""
    fewest = min(settings.DRIFT_MIN_BASELINE_SAMPLES, baseline.target_runs)
    days_end = baseline.window_start + timedelta(days=baseline.target_days)
    rows = _window_rows(baseline, min(now, days_end), baseline.target_runs)
    end: datetime | None = rows[-1][0] if len(rows) >= baseline.target_runs else None
    if end is None and now >= days_end:
        end = days_end
        if len(rows) < fewest:
            rows = _window_rows(baseline, now, fewest)
            end = rows[-1][0] if len(rows) >= fewest else None
    if hold or end is None:
        if len(rows) != baseline.runs:
            Baseline.objects.filter(pk=baseline.pk).update(runs=len(rows))
        return 0
    stats = Summary.of(row[1:] for row in rows).to_json(
        sample_max=settings.DRIFT_BASELINE_SAMPLE_MAX
    )
    return Baseline.objects.filter(pk=baseline.pk, state=BaselineState.FORMING).update(
        state=BaselineState.SET, window_end=end, runs=len(rows), stats=stats, set_at=now
    )


def _references() -> dict[Stream, dict[str, Any]]:
    """Per agent and environment: the newest pinned baseline, each version's own set
    baseline, and the newest set one of all (what a new version is compared against)."""
    refs: dict[Stream, dict[str, Any]] = defaultdict(lambda: {"pinned": None, "own": {}})
    rows = Baseline.objects.filter(state=BaselineState.SET).order_by("set_at", "pk")
    for baseline in rows.only(
        "id", "agent_id", "environment", "version_id", "source", "window_end", "set_at"
    ):
        ref = refs[(baseline.agent_id, baseline.environment)]
        if baseline.source == BaselineSource.PINNED:
            ref["pinned"] = baseline
        else:
            ref["own"][baseline.version_id] = baseline
            ref["newest"] = baseline
    return refs


def reference_for(refs: dict[str, Any], version_id: int) -> Baseline | None:
    """A version's reference: a pinned baseline, else its own, else the newest set one."""
    result: Baseline | None = refs["pinned"] or refs["own"].get(version_id) or refs.get("newest")
    return result


# --- detection -------------------------------------------------------------------------------


def drift_detect(*, now: datetime) -> tuple[int, list[DriftAlert], list[DriftAlert]]:
    """Compare each (agent, environment, version)'s runs of the last day and the last hour
    with its reference; record the drifts. Returns (versions compared, raised, updated)."""
    t = Thresholds.from_settings()
    refs = _references()
    day, hour = now - timedelta(days=1), now - timedelta(hours=1)
    groups: dict[tuple[int, str, int], list[tuple[Any, ...]]] = defaultdict(list)
    rows = (
        RunSample.objects.filter(ended_at__gt=day, ended_at__lte=now)
        .order_by("ended_at")
        .values_list("agent_id", "environment", "version_id", "ended_at", *SAMPLE_COLUMNS)
    )
    for row in rows.iterator(chunk_size=5_000):
        groups[(row[0], row[1], row[2])].append(row[3:])
    raised: list[DriftAlert] = []
    updated: list[DriftAlert] = []
    inherited: list[tuple[int, str, int]] = []  # versions compared with an earlier baseline
    work: list[tuple[int, str, int, Baseline, list[tuple[Any, ...]]]] = []
    for (agent_id, env, version_id), samples in groups.items():
        ref = reference_for(refs[(agent_id, env)], version_id) if (agent_id, env) in refs else None
        if ref is None:
            continue
        if ref.version_id == version_id and ref.window_end is not None:
            samples = [s for s in samples if s[0] > ref.window_end]  # not its own window
        if len(samples) < t.min_current:
            continue
        if ref.version_id != version_id:
            inherited.append((agent_id, env, version_id))
        work.append((agent_id, env, version_id, ref, samples))
    # Only the baselines compared against are read whole (their stats), in one query.
    baselines = {
        pk: Summary.from_json(stats)
        for pk, stats in Baseline.objects.filter(pk__in={w[3].pk for w in work}).values_list(
            "pk", "stats"
        )
    }
    for agent_id, env, version_id, ref, samples in work:
        found: dict[tuple[str, str], tuple[str, Finding]] = {}
        for metric, key, finding in compare(
            baselines[ref.pk], Summary.of(s[1:] for s in samples), t
        ):
            found[(metric, key)] = (Window.DAY, finding)
        recent = [s for s in samples if s[0] > hour]
        if len(recent) >= t.min_current:
            for metric, key, finding in compare(
                baselines[ref.pk], Summary.of(s[1:] for s in recent), t
            ):
                found.setdefault((metric, key), (Window.HOUR, finding))
        for (metric, key), (window, finding) in found.items():
            try:
                alert, made = _alert_record(
                    agent_id, env, version_id, ref, metric, key, window, finding, now
                )
            except Exception:  # one stream's failure must not silence the others
                logger.exception("drift: recording a %s alert of agent %s failed", metric, agent_id)
                continue
            if alert is not None:
                (raised if made else updated).append(alert)
    _mark_compared(inherited, now)
    return len(work), raised, updated


def _mark_compared(versions: list[tuple[int, str, int]], now: datetime) -> None:
    """These versions were compared with an earlier version's baseline: their own baselines
    (started here when they have none yet) may now be set, unless an alert holds them back."""
    if not versions:
        return
    wanted = set(versions)
    automatic = Baseline.objects.filter(
        source=BaselineSource.AUTOMATIC, version_id__in={v for _, _, v in wanted}
    ).exclude(state=BaselineState.RETIRED)
    known: dict[tuple[int, str, int], tuple[int, datetime | None]] = {
        (agent_id, env, version_id): (pk, compared_at)
        for pk, agent_id, env, version_id, compared_at in automatic.values_list(
            "pk", "agent_id", "environment", "version_id", "compared_at"
        )
    }
    unmarked = [pk for key, (pk, at) in known.items() if key in wanted and at is None]
    if unmarked:
        Baseline.objects.filter(pk__in=unmarked, compared_at__isnull=True).update(compared_at=now)
    missing = wanted - known.keys()
    if missing:
        firsts = (
            RunSample.objects.filter(version_id__in={v for _, _, v in missing})
            .values_list("agent_id", "environment", "version_id")
            .annotate(first=Min("ended_at"))
        )
        Baseline.objects.bulk_create(
            [
                _forming(agent_id, env, version_id, first, compared_at=now)
                for agent_id, env, version_id, first in firsts
                if (agent_id, env, version_id) in missing
            ],
            ignore_conflicts=True,
        )


def _onset(
    agent_id: int, env: str, version_id: int, ref: Baseline, metric: str, key: str,
    finding: Finding, now: datetime,
) -> datetime:  # fmt: skip
    """When the drift most likely began: the CUSUM estimate over the stream's runs (every
    version) since the reference window ended, at most a week back -- and never before the
    drifted version's first run there (its drift cannot start before it served)."""
    start = max(ref.window_end or now, now - ONSET_LOOKBACK)
    rows = RunSample.objects.filter(
        agent_id=agent_id, environment=env, ended_at__gt=start, ended_at__lte=now
    ).order_by("ended_at")
    at, values = [], []
    served: datetime | None = None
    for row in rows.values_list("ended_at", "version_id", *SAMPLE_COLUMNS).iterator(
        chunk_size=5_000
    ):
        if served is None and row[1] == version_id:
            served = row[0]
        value = indicator(metric, key, finding.subject, row[2:])
        if value is not None:
            at.append(row[0])
            values.append(value)
    if not values:
        return now
    # Halfway between before and now: runs before the change pull the walk one way, after it
    # the other, so its turning point marks the change sharply.
    reference = (finding.baseline_value + finding.current_value) / 2
    onset = at[onset_index(values, reference, rising=finding.rises)]
    return max(onset, served) if served is not None else onset


def _alert_record(
    agent_id: int,
    env: str,
    version_id: int,
    ref: Baseline,
    metric: str,
    key: str,
    window: str,
    finding: Finding,
    now: datetime,
) -> tuple[DriftAlert | None, bool]:
    figures = {
        "baseline": ref, "window": window, "test": finding.test, "statistic": finding.statistic,
        "p_value": finding.p_value, "psi": finding.psi, "subject": finding.subject[:140],
        "baseline_value": finding.baseline_value, "current_value": finding.current_value,
        "baseline_n": finding.baseline_n, "current_n": finding.current_n,
        "shares": finding.shares, "last_seen_at": now,
    }  # fmt: skip
    live = DriftAlert.objects.filter(
        agent_id=agent_id, environment=env, version_id=version_id, metric=metric, key=key,
        status__in=LIVE_STATUSES,
    )  # fmt: skip
    with transaction.atomic():
        alert = live.select_for_update().first()
        if alert is not None:
            return _alert_update(alert, figures, finding, now), False
        agent = Agent.objects.get(pk=agent_id)
        onset = _onset(agent_id, env, version_id, ref, metric, key, finding, now)
        suspect = suspected_change(change_events(agent, onset), onset)
        try:
            with transaction.atomic():
                alert = DriftAlert.objects.create(
                    agent=agent, environment=env, version_id=version_id, metric=metric, key=key,
                    severity=finding.severity, onset_at=onset, first_seen_at=now,
                    suspected_change=(suspect.words if suspect else "")[:300],
                    suspected_event_id=suspect.id if suspect else None, **figures,
                )  # fmt: skip
        except IntegrityError:  # another worker raised it a moment ago: theirs stands
            return None, False
        audit_record(
            actor=SYSTEM, action="drift.alert.raised", target_type="agent", target_id=agent.pk,
            target_repr=agent.slug,
            after={"alert": alert.pk, "metric": metric, "key": key, "severity": alert.severity,
                   "environment": env, "p_value": finding.p_value},
            message=alert_headline(alert),
        )  # fmt: skip
        _announce(alert, "raised")
    return alert, True


def _alert_update(
    alert: DriftAlert, figures: dict[str, Any], finding: Finding, now: datetime
) -> DriftAlert:
    """The same drift seen again: new figures; a snooze that ran out reopens it; a rise to
    critical is announced (and may engage the kill switch)."""
    escalated = alert.severity == Severity.WARNING and finding.severity == Severity.CRITICAL
    for name, value in figures.items():
        setattr(alert, name, value)
    alert.updates += 1
    fields = [*figures, "updates"]
    if escalated:
        alert.severity = Severity.CRITICAL
        fields.append("severity")
    if alert.status == AlertStatus.SNOOZED and (alert.snoozed_until or now) <= now:
        alert.status, alert.snoozed_until = AlertStatus.OPEN, None
        fields += ["status", "snoozed_until"]
    alert.save(update_fields=fields)
    if escalated:
        _announce(alert, "critical")
    return alert


def _announce(alert: DriftAlert, event: str) -> None:
    """Once the alert commits: plan its notices, and for a critical one, fire the kill switch
    rules that answer critical drift."""
    alert_id = alert.pk

    def announce() -> None:  # named: robust on_commit logs its __qualname__
        from . import tasks

        tasks.queue_drift_notices(alert_id, event)
        if event == "critical" or (event == "raised" and alert.severity == Severity.CRITICAL):
            kill_switch_answer(alert_id)

    transaction.on_commit(announce, robust=True)


def kill_switch_answer(alert_id: int) -> bool:
    """Fire the ``drift_critical`` kill switch rules over the alert's agent (docs/
    killswitch-triggers.md); whether any engaged."""
    from apps.killswitch.triggers import trigger_fire

    alert = DriftAlert.objects.select_related("agent").get(pk=alert_id)
    firings = trigger_fire("drift_critical", alert.agent, detail=alert_headline(alert))
    if firings:
        DriftAlert.objects.filter(pk=alert_id).update(kill_switch_engaged=True)
    return bool(firings)


# --- what people do ----------------------------------------------------------------------------


def _audit(actor: Actor, alert: DriftAlert, action: str, message: str, **after: Any) -> None:
    audit_record(
        actor=actor, action=f"drift.alert.{action}", target_type="agent",
        target_id=alert.agent_id, target_repr=alert.agent.slug,
        after={"alert": alert.pk, **after}, message=message,
    )  # fmt: skip


def _require_live(alert: DriftAlert) -> None:
    if alert.status == AlertStatus.RESOLVED:
        raise ApplicationError("This alert is already resolved.")


@transaction.atomic
def alert_acknowledge(*, alert: DriftAlert, actor: Actor) -> DriftAlert:
    """Someone is on it: the alert stays live and keeps updating, and says who."""
    _require_live(alert)
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by_name, alert.acknowledged_at = actor.name, timezone.now()
    alert.snoozed_until = None
    alert.save(update_fields=["status", "acknowledged_by_name", "acknowledged_at", "snoozed_until"])
    _audit(actor, alert, "acknowledged", f"{actor.name} acknowledged: {alert_headline(alert)}")
    return alert


@transaction.atomic
def alert_snooze(*, alert: DriftAlert, actor: Actor, hours: int) -> DriftAlert:
    """Quiet until then: no notices; the next cycle after it runs out reopens it if the drift
    is still there."""
    _require_live(alert)
    until = timezone.now() + timedelta(hours=hours)
    if hours < 1 or timedelta(hours=hours) > SNOOZE_MAX:
        raise ApplicationError(
            "Snooze for 1 hour to 30 days.", details={"hours": ["Between 1 and 720."]}
        )
    alert.status, alert.snoozed_until = AlertStatus.SNOOZED, until
    alert.save(update_fields=["status", "snoozed_until"])
    _audit(
        actor, alert, "snoozed", f"{actor.name} snoozed it for {hours} h", until=until.isoformat()
    )
    return alert


@transaction.atomic
def alert_resolve(*, alert: DriftAlert, actor: Actor, resolution: str = "") -> DriftAlert:
    """Closed: a drift seen again afterwards raises a new alert."""
    _require_live(alert)
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by_name, alert.resolved_at = actor.name, timezone.now()
    alert.resolution = resolution.strip()[:300]
    alert.snoozed_until = None
    alert.save(
        update_fields=["status", "resolved_by_name", "resolved_at", "resolution", "snoozed_until"]
    )
    _audit(actor, alert, "resolved", f"{actor.name} resolved it: {alert.resolution or 'no note'}")
    return alert


@transaction.atomic
def baseline_pin(
    *,
    agent: Agent,
    environment: str,
    version: AgentVersion,
    start: datetime,
    end: datetime,
    actor: Actor,
    note: str = "",
) -> Baseline:
    """Pin the agent's baseline in an environment to a window of one version's runs (accept a
    change as the new normal, or choose a known-good period). In force from the next cycle."""
    if end <= start:
        raise ApplicationError(
            "The window must end after it starts.", details={"end": ["After start."]}
        )
    rows = list(
        RunSample.objects.filter(
            agent_id=agent.pk,
            environment=environment,
            version_id=version.pk,
            ended_at__gte=start,
            ended_at__lte=end,
        ).values_list(*SAMPLE_COLUMNS)
    )
    if len(rows) < settings.DRIFT_MIN_BASELINE_SAMPLES:
        raise ApplicationError(
            f"That window holds {len(rows)} runs of v{version.number} in {environment}; a "
            f"baseline needs at least {settings.DRIFT_MIN_BASELINE_SAMPLES}.",
            details={"start": ["Too few runs in this window."]},
        )
    now = timezone.now()
    baseline = Baseline.objects.create(
        agent=agent, environment=environment, version=version, source=BaselineSource.PINNED,
        state=BaselineState.SET, target_runs=len(rows), target_days=max((end - start).days, 1),
        window_start=start, window_end=end, runs=len(rows), set_at=now, set_by_name=actor.name,
        note=note.strip()[:300],
        stats=Summary.of(rows).to_json(sample_max=settings.DRIFT_BASELINE_SAMPLE_MAX),
    )  # fmt: skip
    Baseline.objects.filter(
        agent=agent, environment=environment, source=BaselineSource.PINNED, state=BaselineState.SET
    ).exclude(pk=baseline.pk).update(state=BaselineState.RETIRED)
    audit_record(
        actor=actor, action="drift.baseline.pinned", target_type="agent", target_id=agent.pk,
        target_repr=agent.slug,
        after={"baseline": baseline.pk, "environment": environment, "version": version.number,
               "start": start.isoformat(), "end": end.isoformat(), "runs": len(rows)},
        message=note,
    )  # fmt: skip
    return baseline


@transaction.atomic
def baseline_unpin(*, agent: Agent, environment: str, actor: Actor) -> int:
    """Back to automatic baselines in this environment."""
    count = Baseline.objects.filter(
        agent=agent, environment=environment, source=BaselineSource.PINNED, state=BaselineState.SET
    ).update(state=BaselineState.RETIRED)
    if count:
        audit_record(
            actor=actor, action="drift.baseline.unpinned", target_type="agent",
            target_id=agent.pk, target_repr=agent.slug, after={"environment": environment},
        )  # fmt: skip
    return count


@transaction.atomic
def alert_accept(*, alert: DriftAlert, actor: Actor) -> Baseline:
    """The change is the new normal: pin the baseline to the drifted version's runs from the
    onset (at most a day) to the last cycle that saw it, and resolve the alert."""
    end = alert.last_seen_at  # the runs the last cycle that saw it compared
    baseline = baseline_pin(
        agent=alert.agent, environment=alert.environment, version=alert.version,
        start=max(alert.onset_at, end - timedelta(days=1)), end=end, actor=actor,
        note=f"accepted from drift alert {alert.pk}",
    )  # fmt: skip
    alert_resolve(
        alert=alert, actor=actor, resolution=f"Accepted as the new baseline by {actor.name}"
    )
    return baseline
