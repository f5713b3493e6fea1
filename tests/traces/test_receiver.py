"""``POST /v1/traces``: authentication, limits, formats, partial success, storage."""

from __future__ import annotations

import gzip
import json

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apps.runtime import services as runtime
from apps.traces import selectors
from apps.traces.models import Span, UnregisteredAgent

from .conftest import export, make_span

pytestmark = pytest.mark.django_db
URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"


def post(client, body, *, content_type=PROTOBUF, **headers):
    return client.post(URL, data=body, content_type=content_type, **headers)


def protobuf_status(response) -> status_pb2.Status:
    status = status_pb2.Status()
    status.ParseFromString(response.content)
    return status


def test_export_without_a_credential_is_refused_with_401(client):
    response = post(client, export(make_span()).SerializeToString())
    assert response.status_code == 401
    assert response["Content-Type"] == PROTOBUF
    assert "Bearer" in protobuf_status(response).message
    assert Span.objects.count() == 0


def test_export_with_a_revoked_or_wrong_credential_is_refused_with_401(client, sender, org):
    runtime.credential_revoke(actor=org.owner, credential=sender.credential)
    for token in (sender.secret, "tth_agent_nonsense"):
        response = post(
            client,
            "{}",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 401
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content)["message"]


def test_protobuf_export_is_stored_and_answered_in_protobuf(client, sender):
    span = make_span(
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
        }
    )
    response = post(client, export(span).SerializeToString(), **sender.auth)
    assert response.status_code == 200
    assert response["Content-Type"] == PROTOBUF
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 0
    stored = Span.objects.get()
    assert stored.agent == sender.agent  # service.name is the agent's slug
    assert stored.credential == sender.credential
    assert stored.environment == "prod"  # the credential's, as the resource named none
    assert (stored.input_tokens, stored.output_tokens) == (100, 20)
    assert stored.trace_id == span.trace_id.hex() and stored.span_id == span.span_id.hex()


def test_gzip_export_is_inflated_and_stored(client, sender):
    body = gzip.compress(export(make_span(), make_span()).SerializeToString())
    response = post(client, body, HTTP_CONTENT_ENCODING="gzip", **sender.auth)
    assert response.status_code == 200
    assert Span.objects.count() == 2


def test_a_body_over_the_limit_is_refused_with_413(client, sender, settings):
    settings.OTLP_MAX_BODY_BYTES = 1000
    response = post(client, b"\x00" * 1001, **sender.auth)
    assert response.status_code == 413
    assert "1000 bytes" in protobuf_status(response).message


def test_a_gzip_bomb_is_refused_with_413_after_inflating_only_the_limit(client, sender, settings):
    settings.OTLP_MAX_BODY_BYTES = 64 * 1024
    bomb = gzip.compress(b"\x00" * (50 * 1024 * 1024))
    assert len(bomb) < settings.OTLP_MAX_BODY_BYTES
    response = post(client, bomb, HTTP_CONTENT_ENCODING="gzip", **sender.auth)
    assert response.status_code == 413
    assert Span.objects.count() == 0


def test_malformed_protobuf_is_a_400_with_a_message(client, sender):
    response = post(client, b"\xff\xff\xff\xff not protobuf", **sender.auth)
    assert response.status_code == 400
    assert "ExportTraceServiceRequest" in protobuf_status(response).message


@pytest.mark.parametrize(
    "body",
    ["{not json", "[1, 2]", '{"resourceSpans": "nope"}', '{"resourceSpans": [{"scopeSpans": 5}]}'],
)
def test_malformed_json_is_a_400_with_a_message(client, sender, body):
    response = post(client, body, content_type="application/json", **sender.auth)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["message"]


def test_broken_gzip_is_a_400(client, sender):
    body = gzip.compress(export(make_span()).SerializeToString())[:-10]
    response = post(client, body, HTTP_CONTENT_ENCODING="gzip", **sender.auth)
    assert response.status_code == 400


def test_other_content_types_are_refused_with_415(client, sender):
    response = post(client, "hello", content_type="text/plain", **sender.auth)
    assert response.status_code == 415
    assert "application/x-protobuf" in json.loads(response.content)["message"]


def test_other_content_encodings_are_refused_with_415(client, sender):
    response = post(client, b"x", HTTP_CONTENT_ENCODING="br", **sender.auth)
    assert response.status_code == 415


def test_a_span_with_a_bad_id_is_counted_in_partial_success_and_the_rest_stored(client, sender):
    good = make_span("good")
    bad = make_span("bad", span_id=b"\x01\x02")
    response = post(client, export(good, bad).SerializeToString(), **sender.auth)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "span_id" in answer.partial_success.error_message
    assert list(Span.objects.values_list("name", flat=True)) == ["good"]


def test_partial_success_in_json_for_a_json_export(client, sender):
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "ok",
                                "startTimeUnixNano": "1764000000000000000",
                                "endTimeUnixNano": "1764000001000000000",
                            },
                            {
                                "traceId": "00000000000000000000000000000000",
                                "spanId": "eee19b7ec3c1b175",
                                "name": "zero trace id",
                                "startTimeUnixNano": "1764000000000000000",
                                "endTimeUnixNano": "1764000001000000000",
                            },
                        ]
                    }
                ],
            }
        ]
    }
    response = post(client, json.dumps(document), content_type="application/json", **sender.auth)
    assert response.status_code == 200
    answer = json.loads(response.content)
    assert answer["partialSuccess"]["rejectedSpans"] in ("1", 1)
    assert "trace_id" in answer["partialSuccess"]["errorMessage"]
    stored = Span.objects.get()
    assert (stored.trace_id, stored.span_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
    )


def test_spans_of_an_unregistered_agent_are_kept_and_listed_for_admins(client, sender, org):
    spans = [make_span(attributes={"gen_ai.agent.name": "shadow-bot"}) for _ in range(3)]
    post(client, export(*spans).SerializeToString(), **sender.auth)
    another = make_span(attributes={"gen_ai.agent.name": "shadow-bot"})
    post(client, export(another).SerializeToString(), **sender.auth)
    post(client, export(spans[0]).SerializeToString(), **sender.auth)  # a retry: not counted
    assert Span.objects.filter(agent__isnull=True, agent_name="shadow-bot").count() == 4
    finding = UnregisteredAgent.objects.get()
    assert (finding.name, finding.span_count, finding.environment) == ("shadow-bot", 4, "prod")
    assert list(selectors.unregistered_agents(user=org.admin)) == [finding]
    assert list(selectors.unregistered_agents(user=org.owner)) == []
    assert list(selectors.unregistered_agents(user=org.outsider)) == []


def test_spans_naming_no_agent_belong_to_the_credentials_agent(client, sender):
    span = make_span()
    post(
        client,
        export(span, resource={"service.name": "unknown_service"}).SerializeToString(),
        **sender.auth,
    )
    assert Span.objects.get().agent == sender.agent
    assert UnregisteredAgent.objects.count() == 0


def test_a_sent_run_id_links_to_the_run_of_the_credentials_agent(client, sender):
    sender.agent.refresh_from_db()
    run, _ = runtime.run_start(credential=sender.credential, task="Triage claim 42")
    other = "00000000-0000-0000-0000-000000000001"
    spans = [
        make_span("linked", {"tether.run.id": str(run.pk)}),
        make_span("unknown run", {"tether.run.id": other}),
    ]
    post(client, export(*spans).SerializeToString(), **sender.auth)
    assert Span.objects.get(name="linked").run == run
    unknown = Span.objects.get(name="unknown run")
    assert unknown.run is None and unknown.run_ref == other


def test_get_is_not_allowed(client):
    response = client.get(URL)
    assert response.status_code == 405


def test_json_error_bodies_are_google_rpc_status(client):
    response = post(client, "{}", content_type="application/json")
    status = json_format.Parse(response.content, status_pb2.Status())
    assert status.code == 16  # UNAUTHENTICATED
