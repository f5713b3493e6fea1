"""A stock OpenTelemetry SDK, unmodified, exporting GenAI spans to a live Tether.

The Python OTLP/HTTP exporter speaks protobuf only (it has no JSON encoding), so the JSON
test encodes the very same SDK spans with the exporter's own encoder and posts them as
OTLP/JSON: ``MessageToDict`` of that request, with ids rewritten to hex as OTLP/JSON requires.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from apps.traces.models import Span

pytestmark = pytest.mark.django_db(transaction=True)


class Recording(SpanExporter):
    """Remembers what the wrapped exporter answered, so a refused export fails the test."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self):
        self.inner.shutdown()


def emit_agent_run(exporter: SpanExporter) -> None:
    """An agent turn as GenAI instrumentors emit it: invoke_agent > chat, execute_tool."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "claims-service", "deployment.environment.name": "prod"}
        )
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.genai")
    with tracer.start_as_current_span(
        "invoke_agent claims-triage",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "claims-triage"},
    ):
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.agent.name": "claims-triage",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 812,
                "gen_ai.usage.output_tokens": 64,
                "gen_ai.usage.cache_read.input_tokens": 512,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool crm-lookup",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.agent.name": "claims-triage",
                "gen_ai.tool.name": "crm-lookup",
                "gen_ai.tool.call.arguments": '{"customer_id": "c-42"}',
            },
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "CRM timed out"))
    provider.shutdown()


def assert_stored_for(sender) -> None:
    spans = {s.kind: s for s in Span.objects.all()}
    assert set(spans) == {"agent", "llm", "tool"}
    assert all(s.agent_id == sender.agent.pk for s in spans.values())
    llm = spans["llm"]
    assert (llm.input_tokens, llm.output_tokens, llm.cached_tokens) == (812, 64, 512)
    assert (llm.model, llm.provider, llm.environment) == ("gpt-4o", "openai", "prod")
    assert llm.parent_span_id == spans["agent"].span_id
    assert llm.trace_id == spans["agent"].trace_id == spans["tool"].trace_id
    tool = spans["tool"]
    assert (tool.tool_name, tool.arguments) == ("crm-lookup", '{"customer_id": "c-42"}')
    assert (tool.status, tool.status_message) == ("error", "CRM timed out")
    assert spans["agent"].duration_ns > 0


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_stock_otlp_http_exporter_protobuf_spans_are_stored_for_the_agent(
    live_server, sender, compression
):
    exporter = Recording(
        OTLPSpanExporter(
            endpoint=live_server.url + "/v1/traces",
            headers={"Authorization": "Bearer " + sender.secret},
            compression=compression,
            timeout=10,
        )
    )
    emit_agent_run(exporter)
    assert exporter.results == [SpanExportResult.SUCCESS] * 3
    assert_stored_for(sender)


def _ids_to_hex(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)


def test_the_same_sdk_spans_as_otlp_json_are_stored_for_the_agent(live_server, sender):
    memory = InMemorySpanExporter()
    emit_agent_run(memory)
    document = json_format.MessageToDict(encode_spans(memory.get_finished_spans()))
    _ids_to_hex(document)
    response = httpx.post(
        live_server.url + "/v1/traces",
        json=document,
        headers={"Authorization": "Bearer " + sender.secret},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}  # no partial_success: nothing was rejected
    assert_stored_for(sender)


def test_the_stock_exporter_is_told_401_without_a_credential(live_server, sender):
    exporter = Recording(OTLPSpanExporter(endpoint=live_server.url + "/v1/traces", timeout=10))
    emit_agent_run(exporter)
    assert exporter.results == [SpanExportResult.FAILURE] * 3
    assert Span.objects.count() == 0
