"""Retention: day partitions dropped, rows of shorter-lived environments deleted, held spans kept."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.runtime import services as runtime
from apps.traces import partitions, services, tasks
from apps.traces.models import Span, Trace
from apps.traces.retention import spans_retention_apply

from .conftest import export, make_span, span_at

pytestmark = pytest.mark.django_db
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions exist on PostgreSQL only"
)
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def store(sender, when: datetime, name: str, *, environment: str = "prod", **kwargs) -> None:
    """One span of ``environment`` at ``when``; on PostgreSQL in a partition of its day, as if
    the partition had been made when that day was today."""
    if partitions.is_partitioned():
        partitions.partition_create(when.date())
    resource = {"service.name": "claims-triage", "deployment.environment.name": environment}
    request = export(span_at(when, name, **kwargs), resource=resource)
    assert services.spans_ingest(credential=sender.credential, request=request).stored == 1


def names() -> set[str]:
    return set(Span.objects.values_list("name", flat=True))


@pytest.fixture
def retention(settings):
    settings.TRACE_RETENTION_DAYS = 10
    settings.TRACE_RETENTION_DAYS_BY_ENVIRONMENT = {"dev": 3}
    return settings


@postgresql_only
def test_day_partitions_past_the_longest_retention_are_dropped_whole(sender, retention):
    store(sender, NOW - timedelta(days=20), "old")
    store(sender, NOW - timedelta(days=5), "recent")
    old_partition = partitions.partition_name((NOW - timedelta(days=20)).date())

    result = spans_retention_apply(now=NOW)

    assert old_partition in result.partitions_dropped
    assert old_partition not in {p.name for p in partitions.partition_list()}
    assert names() == {"recent"}
    assert list(Trace.objects.values_list("name", flat=True)) == ["recent"]  # rollups too


@postgresql_only
def test_a_partition_with_held_spans_is_kept_and_only_its_other_spans_deleted(
    sender, retention, org
):
    held_trace = os.urandom(16)
    when = NOW - timedelta(days=20)
    store(sender, when, "held", trace_id=held_trace)
    store(sender, when + timedelta(minutes=1), "not held")
    hold = services.legal_hold_place(
        actor=org.admin, trace_id=held_trace.hex(), reason="Incident 42: claim paid twice"
    )
    partition = partitions.partition_name(when.date())

    result = spans_retention_apply(now=NOW)
    assert partition in result.partitions_kept_for_holds
    assert names() == {"held"}
    assert Trace.objects.filter(trace_id=held_trace.hex()).exists()

    services.legal_hold_release(actor=org.admin, hold=hold, reason="Case closed")
    result = spans_retention_apply(now=NOW)
    assert names() == set()
    assert partition not in {p.name for p in partitions.partition_list()}


def test_an_environment_with_a_shorter_retention_loses_its_older_spans_only(sender, retention):
    store(sender, NOW - timedelta(days=5), "dev, 5 days", environment="dev")
    store(sender, NOW - timedelta(days=1), "dev, 1 day", environment="dev")
    store(sender, NOW - timedelta(days=5), "prod, 5 days", environment="prod")
    store(sender, NOW - timedelta(days=5), "staging, 5 days", environment="staging")

    result = spans_retention_apply(now=NOW)

    assert names() == {"dev, 1 day", "prod, 5 days", "staging, 5 days"}
    assert result.spans_deleted == 1
    assert not Trace.objects.filter(name="dev, 5 days").exists()


def test_spans_of_a_held_run_are_kept_until_the_hold_is_released(sender, retention, org):
    run, _ = runtime.run_start(credential=sender.credential, task="Refund 77")
    trace_id = os.urandom(16)
    when = NOW - timedelta(days=8)
    store(sender, when, "linked", environment="dev", trace_id=trace_id,
          attributes={"tether.run.id": str(run.pk)})  # fmt: skip
    # The same trace, exported by a library that does not send tether.run.id:
    store(sender, when + timedelta(seconds=1), "same trace", environment="dev", trace_id=trace_id)
    store(sender, when, "another run's", environment="dev")
    hold = services.legal_hold_place(actor=org.admin, run=run, reason="Incident 43")

    spans_retention_apply(now=NOW)
    assert names() == {"linked", "same trace"}
    assert spans_retention_apply(now=NOW).spans_deleted == 0  # still held

    services.legal_hold_release(actor=org.admin, hold=hold)
    result = spans_retention_apply(now=NOW)
    assert names() == set()
    assert result.holds_swept == 1
    assert not Trace.objects.filter(trace_id=trace_id.hex()).exists()


def test_a_hold_on_a_trace_spares_that_trace_only(sender, retention, org):
    held = os.urandom(16)
    store(sender, NOW - timedelta(days=5), "held", environment="dev", trace_id=held)
    store(sender, NOW - timedelta(days=5), "other", environment="dev")
    services.legal_hold_place(actor=org.admin, trace_id=held.hex(), reason="Incident 44")
    spans_retention_apply(now=NOW)
    assert names() == {"held"}


def test_spans_of_any_date_past_retention_are_deleted_wherever_they_landed(sender, retention):
    # START (2025) lands in DEFAULT on PostgreSQL: it is swept on every run.
    services.spans_ingest(credential=sender.credential, request=export(make_span("ancient")))
    store(sender, NOW - timedelta(days=1), "fresh")
    spans_retention_apply(now=NOW)
    assert names() == {"fresh"}


def test_retention_zero_keeps_spans_forever(sender, settings):
    settings.TRACE_RETENTION_DAYS = 0
    settings.TRACE_RETENTION_DAYS_BY_ENVIRONMENT = {}
    services.spans_ingest(credential=sender.credential, request=export(make_span("ancient")))
    result = spans_retention_apply(now=NOW)
    assert names() == {"ancient"}
    assert (result.spans_deleted, result.partitions_dropped) == (0, [])


def test_running_retention_again_changes_nothing(sender, retention):
    store(sender, NOW - timedelta(days=20), "old")
    store(sender, NOW - timedelta(days=5), "dev", environment="dev")
    store(sender, NOW - timedelta(days=1), "fresh")
    spans_retention_apply(now=NOW)
    again = spans_retention_apply(now=NOW)
    assert (again.spans_deleted, again.traces_deleted, again.partitions_dropped) == (0, 0, [])
    assert names() == {"fresh"}


def test_the_beat_task_applies_retention(sender, retention):
    store(sender, NOW - timedelta(days=20), "old")
    counts = tasks.retention_apply()
    assert counts["spans_deleted"] + counts["partitions_dropped"] >= 1
    assert names() == set()


def test_the_beat_task_makes_partitions_ahead(settings):
    settings.TRACE_PARTITIONS_AHEAD_DAYS = 2
    made = tasks.partitions_ensure_ahead()
    if partitions.is_partitioned():
        assert made >= 0
        today = datetime.now(UTC).date()
        assert partitions.missing([today, today + timedelta(days=2)]) == []
    else:
        assert made == 0
