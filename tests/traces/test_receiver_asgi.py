"""``POST /v1/traces`` as ASGI serves it (apps/traces/receiver.py): the real application,
through httpx's ASGI transport, answered in ingest threads with their own connections."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apps.traces import admission, receiver
from apps.traces.models import Span, Trace
from controlplane.asgi import application

from .conftest import export, make_span

pytestmark = pytest.mark.django_db(transaction=True)  # ingest threads use their own connections
PROTOBUF = "application/x-protobuf"


@pytest.fixture(autouse=True)
def ingest_threads_let_go_of_the_test_database():
    yield
    receiver.shut_down()


def call(*requests: dict[str, Any], scheme: str = "http") -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://127.0.0.1") as http:
            return [await http.request(**r) for r in requests]

    return asyncio.run(main())


def post(sender, body: bytes, **headers: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "/v1/traces",
        "content": body,
        "headers": {
            "Authorization": f"Bearer {sender.secret}",
            "Content-Type": PROTOBUF,
            **headers,
        },
    }


def test_an_export_is_stored_and_answered_in_protobuf_under_its_request_id(sender):
    spans = [make_span(f"step {n}") for n in range(3)]
    [answer] = call(
        post(sender, export(*spans).SerializeToString(), **{"X-Request-ID": "exporter-req-0001"})
    )
    assert answer.status_code == 200, answer.content
    assert answer.headers["content-type"] == PROTOBUF
    assert answer.headers["x-request-id"] == "exporter-req-0001"
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer.content)
    assert response.partial_success.rejected_spans == 0
    assert Span.objects.filter(agent=sender.agent).count() == 3
    assert Trace.objects.count() == 3


def test_a_retried_export_is_stored_once_through_asgi_too(sender):
    body = gzip.compress(export(make_span("once")).SerializeToString())
    answers = call(*[post(sender, body, **{"Content-Encoding": "gzip"}) for _ in range(2)])
    assert [a.status_code for a in answers] == [200, 200]
    assert Span.objects.filter(name="once").count() == 1
    assert Trace.objects.get().span_count == 1


def test_with_every_slot_taken_an_export_is_answered_429_at_once(sender, settings):
    settings.OTLP_MAX_IN_FLIGHT = 2
    assert admission.exports.try_acquire() and admission.exports.try_acquire()
    try:
        [answer] = call(post(sender, export(make_span()).SerializeToString()))
    finally:
        admission.exports.release()
        admission.exports.release()
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == str(settings.OTLP_RETRY_AFTER_SECONDS)
    status = status_pb2.Status()
    status.ParseFromString(answer.content)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    assert Span.objects.count() == 0
    [again] = call(post(sender, export(make_span()).SerializeToString()))
    assert again.status_code == 200 and Span.objects.count() == 1
    assert admission.exports.count == 0


def test_the_asgi_endpoint_answers_errors_as_the_view_does(sender, settings):
    settings.OTLP_MAX_BODY_BYTES = 100
    body = export(make_span()).SerializeToString()
    big, bad, anonymous = call(
        post(sender, body * 2),
        post(sender, b"\xff\xff not protobuf"[:100]),
        {"method": "POST", "url": "/v1/traces", "content": body,
         "headers": {"Content-Type": PROTOBUF}},
    )  # fmt: skip
    assert big.status_code == 413
    assert bad.status_code == 400
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"]
    [get] = call({"method": "GET", "url": "/v1/traces"})
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    assert admission.exports.count == 0


def test_plain_http_is_refused_where_https_is_required(sender, settings):
    settings.SECURE_SSL_REDIRECT = True
    body = export(make_span()).SerializeToString()
    [plain] = call(post(sender, body))
    assert plain.status_code == 403
    [secure] = call(post(sender, body), scheme="https")
    assert secure.status_code == 200


def test_an_unknown_host_is_refused(sender):
    [answer] = call(post(sender, export(make_span()).SerializeToString(), Host="evil.example"))
    assert answer.status_code == 400
    assert Span.objects.count() == 0
