"""Exports of a range: canonical JSONL that re-verifies, and OCSF API Activity for a SIEM."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from apps.audit.constants import GENESIS_HASH
from apps.audit.export import ocsf_activity
from apps.audit.models import AuditEvent
from apps.common.request_context import set_request_id

from ..clients import console_client as client_for
from ..factories import make_user
from .conftest import record, third_party_verify

pytestmark = pytest.mark.django_db

EXPORT = reverse("audit:chain-export")


def lines_of(response: Any) -> list[bytes]:
    assert response.status_code == 200, response.content[:500]
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="tether-audit-')
    body = b"".join(response.streaming_content)
    return body.splitlines()


def test_the_jsonl_export_of_the_whole_log_re_verifies_with_the_standard_library(org):
    record(3, before={"x": 1.0, "text": "é ✓"}, after={"y": [1, 2]})
    lines = lines_of(client_for(org.auditor).get(EXPORT))
    assert len(lines) == AuditEvent.objects.count()
    assert third_party_verify(lines) == len(lines)
    first = json.loads(lines[0])
    assert first["seq"] == 1 and first["prev_hash"] == GENESIS_HASH


def test_a_jsonl_line_is_the_canonical_event_with_its_hash(org):
    event = record(1, message="ünïcode")[0]
    line = lines_of(client_for(org.admin).get(EXPORT, {"from_id": event.id}))[0]
    assert line.decode("utf-8") == json.dumps(
        json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert json.loads(line)["hash"] == event.hash
    assert "ünïcode".encode() in line


def test_an_id_range_starts_from_the_prev_hash_of_the_event_before_it(org):
    events = record(6)
    response = client_for(org.admin).get(EXPORT, {"from_id": events[2].id, "to_id": events[4].id})
    assert response["X-Audit-Event-Count"] == "3"
    lines = lines_of(response)
    assert [json.loads(line)["id"] for line in lines] == [e.id for e in events[2:5]]
    assert third_party_verify(lines, first_prev=events[1].hash) == 3


def test_a_time_range_is_inclusive_and_utc_without_an_offset(org):
    events = record(3)
    moment = events[1].occurred_at.astimezone(UTC)
    naive = moment.replace(tzinfo=None).isoformat()
    lines = lines_of(client_for(org.admin).get(EXPORT, {"since": naive, "until": naive}))
    assert [json.loads(line)["id"] for line in lines] == [events[1].id]
    # The same instant written with a +02:00 offset; one microsecond later holds nothing.
    last = events[2].occurred_at.astimezone(timezone(timedelta(hours=2)))
    lines = lines_of(client_for(org.admin).get(EXPORT, {"since": last.isoformat()}))
    assert [json.loads(line)["id"] for line in lines] == [events[2].id]
    later = (last + timedelta(microseconds=1)).isoformat()
    assert lines_of(client_for(org.admin).get(EXPORT, {"since": later})) == []


def test_an_empty_range_is_an_empty_file(org):
    record(1)
    assert lines_of(client_for(org.admin).get(EXPORT, {"from_id": 10**12})) == []


def test_the_ocsf_export_maps_each_event_to_api_activity(org):
    set_request_id("req-ocsf-0001")
    before = AuditEvent.objects.count()
    from apps.registry import services as registry

    agent = registry.agent_create(
        actor=org.owner,
        data={"name": "Claims", "slug": "claims", "mission": "m", "department": org.claims},
    )
    created = AuditEvent.objects.get(action="registry.agent.created", target_id=str(agent.pk))
    lines = lines_of(client_for(org.auditor).get(EXPORT, {"format": "ocsf", "from_id": created.id}))
    assert len(lines) == AuditEvent.objects.count() - before
    event = json.loads(lines[0])
    assert event["class_uid"] == 6003 and event["class_name"] == "API Activity"
    assert event["category_uid"] == 6
    assert (event["activity_id"], event["activity_name"]) == (1, "Create")
    assert event["type_uid"] == 600301
    assert event["severity_id"] == 1 and event["status_id"] == 1
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert event["time"] == (created.occurred_at - epoch) // timedelta(milliseconds=1)
    assert event["actor"]["user"] == {
        "name": "alice",
        "uid": str(org.owner.pk),
        "type_id": 1,
        "type": "User",
    }
    assert event["api"]["operation"] == "registry.agent.created"
    assert event["api"]["request"] == {"uid": "req-ocsf-0001"}
    assert event["metadata"]["product"]["name"] == "Tether"
    assert event["metadata"]["product"]["vendor_name"]
    assert event["metadata"]["version"].startswith("1.")
    assert event["metadata"]["uid"] == str(created.id)
    assert event["metadata"]["correlation_uid"] == "req-ocsf-0001"
    assert event["resources"] == [{"type": "agent", "uid": str(agent.pk), "name": "claims"}]
    assert event["unmapped"]["hash"] == created.hash
    assert event["unmapped"]["prev_hash"] == created.prev_hash
    assert event["unmapped"]["after"] == created.after
    assert event["src_endpoint"]


@pytest.mark.parametrize(
    ("action", "activity"),
    [
        ("registry.agent.created", (1, "Create")),
        ("accounts.token.revoked", (4, "Delete")),
        ("policy.updated", (3, "Update")),
        ("runtime.run.started", (1, "Create")),
        ("something.odd", (99, "Other")),
    ],
)
def test_ocsf_activities_follow_the_last_word_of_the_action(action, activity):
    assert ocsf_activity(action) == activity


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from_id": "abc"}, "whole number"),
        ({"from_id": "0"}, "greater than or equal to 1"),
        ({"to_id": "9" * 40}, "less than or equal to"),
        ({"from_id": "5", "to_id": "2"}, "ends before it starts"),
        ({"since": "yesterday"}, "not a date and time"),
        ({"since": "2026-02-01T00:00:00 01:00"}, "not a date and time"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "ends before it starts"),
        ({"format": "csv"}, "Select a valid choice"),
        ({"since": "\x00"}, "not a date and time"),
    ],
)
def test_bad_parameters_are_a_400_with_a_message(org, params, words):
    response = client_for(org.admin).get(EXPORT, params)
    assert response.status_code == 400
    body = response.content.decode()
    assert words in body
    assert "<title>Audit chain · Tether</title>" in body


def test_a_range_over_the_limit_is_refused_with_where_the_first_part_ends(org, monkeypatch):
    monkeypatch.setattr("apps.audit.export.EXPORT_MAX_EVENTS", 3)
    events = record(5)
    response = client_for(org.admin).get(EXPORT, {"from_id": events[0].id})
    assert response.status_code == 400
    body = response.content.decode()
    assert "This range holds 5 events; one export holds at most 3." in body
    assert f"to_id={events[2].id}" in body
    ok = client_for(org.admin).get(EXPORT, {"from_id": events[0].id, "to_id": events[2].id})
    assert len(lines_of(ok)) == 3


def test_department_scoped_auditors_and_other_roles_may_not_export(org):
    record(1)
    scoped = make_user("dora", ("auditor", org.claims))
    for user in (scoped, org.owner, org.finance):
        response = client_for(user).get(EXPORT)
        assert response.status_code == 403
        assert not isinstance(response, StreamingHttpResponse)
    response = client_for(org.outsider).get(EXPORT)
    assert response.status_code == 403
    assert "You have no role in Tether yet" in response.content.decode()


def test_anonymous_visitors_are_sent_to_log_in():
    response = client_for_anonymous().get(EXPORT)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def client_for_anonymous() -> Any:
    from django.test import Client

    return Client()


@pytest.mark.filterwarnings("error")  # Django warns when it has to buffer a sync iterator
def test_under_asgi_the_export_is_an_async_stream_not_a_buffered_body(org):
    from asgiref.sync import async_to_sync
    from django.test import AsyncRequestFactory

    from apps.audit.export import export_response
    from apps.audit.selectors import ExportRange

    events = record(4)
    request = AsyncRequestFactory().get(EXPORT)
    response = export_response(
        request, user=org.admin, bounds=ExportRange(from_id=events[0].id), export_format="jsonl"
    )
    assert response.is_async

    async def consume() -> list[bytes]:
        return [chunk async for chunk in response]

    body = b"".join(async_to_sync(consume)())
    assert third_party_verify(body.splitlines(), first_prev=events[0].prev_hash) == 4
