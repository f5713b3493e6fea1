"""Back-pressure: an export the receiver cannot take now is answered 429/503 with Retry-After,
never accepted and dropped."""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from google.rpc import code_pb2, status_pb2

from apps.traces import admission
from apps.traces import views as receiver
from apps.traces.models import Span

from .conftest import export, make_span

pytestmark = pytest.mark.django_db
URL = "/v1/traces"


def post(client, sender, *, content_type="application/x-protobuf"):
    request = export(make_span("chat"))
    body = request.SerializeToString() if content_type == "application/x-protobuf" else "{}"
    return client.post(URL, data=body, content_type=content_type, **sender.auth)


def test_an_export_over_the_in_flight_bound_is_answered_429_with_retry_after(
    client, sender, settings
):
    settings.OTLP_MAX_IN_FLIGHT = 1
    settings.OTLP_RETRY_AFTER_SECONDS = 3
    with admission.exports.slot() as admitted:  # another export is being stored
        assert admitted
        response = post(client, sender)
    assert response.status_code == 429
    assert response["Retry-After"] == "3"
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert "retry" in status.message.lower()
    assert Span.objects.count() == 0  # refused, not dropped: the exporter still has it

    # The exporter retries once the slot is free: stored.
    assert post(client, sender).status_code == 200
    assert Span.objects.count() == 1
    assert admission.exports.count == 0


def test_a_json_export_over_the_bound_gets_a_json_429(client, sender, settings):
    settings.OTLP_MAX_IN_FLIGHT = 1
    with admission.exports.slot():
        response = post(client, sender, content_type="application/json")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"]
    assert json.loads(response.content)["code"] == code_pb2.RESOURCE_EXHAUSTED


def test_slots_are_given_back_whatever_the_answer(client, sender, settings):
    settings.OTLP_MAX_IN_FLIGHT = 2
    response = client.post(
        URL, data=b"\xff\xff not protobuf", content_type="application/x-protobuf", **sender.auth
    )
    assert response.status_code == 400
    assert post(client, sender).status_code == 200
    assert admission.exports.count == 0


def test_no_database_connection_in_time_is_a_503_with_retry_after(client, sender, monkeypatch):
    def pool_timeout(**kwargs):
        # What Django raises when the pool lends no connection within DB_POOL_TIMEOUT.
        raise OperationalError("couldn't get a connection after 2.00 sec")

    monkeypatch.setattr(receiver, "spans_ingest", pool_timeout)
    response = post(client, sender)
    assert response.status_code == 503
    assert response["Retry-After"]
    assert admission.exports.count == 0
    assert Span.objects.count() == 0
