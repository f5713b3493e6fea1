"""Span storage: day partitions, a retried export stored once, every column as mapped."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.runtime import services as runtime
from apps.traces import partitions, services, storage
from apps.traces.models import Span, Trace, UnregisteredAgent
from apps.traces.otlp import attributes_dict, map_span, resource_facts

from .conftest import START, export, kvs, make_span
from .conftest import span_at as at

pytestmark = pytest.mark.django_db
URL = "/v1/traces"
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitions exist on PostgreSQL only"
)


def post(client, sender, *spans, **resource):
    body = export(*spans, **resource).SerializeToString()
    response = client.post(URL, data=body, content_type="application/x-protobuf", **sender.auth)
    assert response.status_code == 200, response.content
    return response


def table_of(span: Span) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM traces_span WHERE id = %s", [span.pk])
        return cursor.fetchone()[0]


@postgresql_only
def test_spans_of_two_days_land_in_the_partitions_of_their_days(client, sender):
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    post(client, sender, at(today, "today"), at(yesterday, "yesterday"))
    assert table_of(Span.objects.get(name="today")) == partitions.partition_name(today.date())
    assert table_of(Span.objects.get(name="yesterday")) == partitions.partition_name(
        yesterday.date()
    )
    # Both partitions were made on demand, as attached partitions of the span table.
    names = {p.name for p in partitions.partition_list()}
    assert {partitions.partition_name(d.date()) for d in (today, yesterday)} <= names


@postgresql_only
def test_a_span_dated_outside_the_window_retention_keeps_lands_in_default(client, sender):
    post(client, sender, make_span("last year"))  # START: November 2025, long past retention
    stored = Span.objects.get(name="last year")
    assert table_of(stored) == partitions.DEFAULT_PARTITION
    old_day = datetime.fromtimestamp(START / 1e9, UTC).date()
    assert partitions.partition_name(old_day) not in {p.name for p in partitions.partition_list()}


@postgresql_only
def test_a_partition_made_for_a_day_default_already_holds_takes_its_spans(client, sender, settings):
    settings.TRACE_PARTITIONS_AHEAD_DAYS = 1
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    post(client, sender, at(later, "from a skewed clock"))
    stored = Span.objects.get(name="from a skewed clock")
    assert table_of(stored) == partitions.DEFAULT_PARTITION  # beyond the days made ahead

    assert partitions.partition_create(later.date())
    assert table_of(stored) == partitions.partition_name(later.date())
    assert Span.objects.filter(name="from a skewed clock").count() == 1


@postgresql_only
def test_partitions_are_made_ahead_for_the_coming_days(settings):
    settings.TRACE_PARTITIONS_AHEAD_DAYS = 3
    today = datetime.now(UTC).date()
    partitions.partitions_ensure_ahead(today=today)
    names = {p.name for p in partitions.partition_list()}
    for n in range(-1, 4):
        assert partitions.partition_name(today + timedelta(days=n)) in names
    assert partitions.partitions_ensure_ahead(today=today) == []  # idempotent


def test_a_retried_export_stores_nothing_new_and_leaves_the_rollups_alone(client, sender):
    trace_id = os.urandom(16)
    spans = [
        make_span("invoke_agent", trace_id=trace_id, attributes={"gen_ai.usage.input_tokens": 7}),
        make_span("shadow", trace_id=trace_id, attributes={"gen_ai.agent.name": "shadow-bot"}),
    ]
    body = export(*spans).SerializeToString()
    for _ in range(2):  # the exporter timed out on the first answer and sent it again
        response = client.post(URL, data=body, content_type="application/x-protobuf", **sender.auth)
        assert response.status_code == 200
    assert Span.objects.count() == 2
    trace = Trace.objects.get(trace_id=trace_id.hex())
    assert (trace.span_count, trace.input_tokens) == (2, 7)
    assert UnregisteredAgent.objects.get(name="shadow-bot").span_count == 1


def test_an_export_partly_stored_already_stores_only_its_new_spans(client, sender):
    trace_id = os.urandom(16)
    first, second, third = (make_span(f"step {n}", trace_id=trace_id) for n in range(3))
    post(client, sender, first, second)
    result = services.spans_ingest(
        credential=sender.credential, request=export(first, second, third)
    )
    assert (result.accepted, result.stored, result.duplicates) == (3, 1, 2)
    assert sorted(Span.objects.values_list("name", flat=True)) == ["step 0", "step 1", "step 2"]
    assert Trace.objects.get(trace_id=trace_id.hex()).span_count == 3


def test_one_span_twice_in_one_export_is_stored_once(client, sender):
    span = make_span("twice")
    result = services.spans_ingest(credential=sender.credential, request=export(span, span))
    assert (result.accepted, result.stored) == (2, 1)
    assert Span.objects.filter(name="twice").count() == 1
    assert Trace.objects.get(trace_id=span.trace_id.hex()).span_count == 1


def test_every_column_is_stored_as_the_mapping_says(client, sender):
    run, _ = runtime.run_start(credential=sender.credential, task="Triage claim 9")
    span = make_span(
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1200,
            "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.usage.reasoning.output_tokens": 12,
            "gen_ai.tool.name": "lookup",
            "gen_ai.tool.call.arguments": '{"id": "c-1", "note": "tab\there, ünïcødé"}',
            "gen_ai.tool.call.result": "line one\nline two\\",
            "gen_ai.conversation.id": "conv-7",
            "tether.run.id": str(run.pk),
            "http.status_code": 200,
            "ratio": 0.25,
            "flag": True,
        },
        parent_span_id=os.urandom(8),
    )
    span.status.code = span.status.STATUS_CODE_ERROR
    event = span.events.add()
    event.name = "exception"
    event.time_unix_nano = START + 5
    event.attributes.extend(kvs({"exception.message": "boom"}))
    resource = {"service.name": "claims-triage", "deployment.environment.name": "staging"}
    request = export(span, resource=resource)

    records = [
        map_span(
            span,
            resource_facts(attributes_dict(request.resource_spans[0].resource.attributes)),
            "tests",
        )
    ]
    expected, _ = services._rows(
        records, credential=sender.credential, ingest_key=None, default_environment="prod"
    )
    services.spans_ingest(credential=sender.credential, request=request)

    stored = Span.objects.get()
    for column in storage.COLUMNS:
        if column == "received_at":
            continue  # the time of the export, not of the mapping
        assert getattr(stored, column) == getattr(expected[0], column), column
    # And what that mapping is, for the columns a COPY could get wrong.
    assert (stored.agent_id, stored.run_id, stored.credential_id) == (
        sender.agent.pk,
        run.pk,
        sender.credential.pk,
    )
    assert stored.environment == "staging"
    assert stored.arguments == '{"id": "c-1", "note": "tab\there, ünïcødé"}'
    assert stored.result == "line one\nline two\\"
    assert stored.attributes == {"http.status_code": 200, "ratio": 0.25, "flag": True}
    assert stored.resource == resource
    assert stored.events == [
        {
            "name": "exception",
            "time_unix_nano": START + 5,
            "attributes": {"exception.message": "boom"},
        }
    ]
    assert (stored.status, stored.status_message) == ("error", "boom")
    assert stored.start_time == datetime.fromtimestamp(START / 1e9, UTC)
    assert stored.duration_ns == 250_000_000


def test_stored_spans_are_read_back_by_id_through_the_orm(client, sender):
    post(client, sender, make_span("one"), make_span("two"))
    ids = dict(Span.objects.values_list("name", "pk"))
    assert Span.objects.get(pk=ids["one"]).name == "one"
    assert Span.objects.get(pk=ids["two"]).name == "two"
    post(client, sender, make_span("three"))
    assert Span.objects.get(name="three").pk > max(ids.values())  # one sequence, increasing
