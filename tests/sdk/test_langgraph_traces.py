"""The same LangGraph agent, instrumented with OpenInference and exporting over OTLP/HTTP to a
live Tether: its LLM and tool spans land in the run's timeline, next to its decisions.

Nothing Tether-specific is in the instrumentation but ``RunSpanProcessor``, which stamps each
span started inside ``client.run(...)`` with the run's id.
"""

from __future__ import annotations

import pytest
import tether
from langchain_core.messages import HumanMessage
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tether.otel import RunSpanProcessor

from apps.traces.models import Span, Trace

from .langgraph_agent import build_agent
from .test_langgraph import scripted_model


@pytest.fixture
def instrumented(live_agent):
    provider = TracerProvider(resource=Resource.create({"service.name": "claims-worker"}))
    provider.add_span_processor(RunSpanProcessor())
    provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=live_agent.url + "/v1/traces",
                headers={"Authorization": "Bearer " + live_agent.key},
                timeout=10,
            )
        )
    )
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    yield provider
    instrumentor.uninstrument()
    provider.shutdown()


@pytest.mark.django_db(transaction=True)
def test_openinference_spans_of_a_langgraph_agent_join_its_run(live_agent, instrumented):
    client = tether.Client(live_agent.url, live_agent.key)
    agent = build_agent(client, scripted_model())
    with client.run("Refund order o-7 for customer c-42") as run:
        agent.invoke({"messages": [HumanMessage("Refund order o-7 for customer c-42.")]})
    instrumented.force_flush()

    spans = Span.objects.filter(run_id=run.id)
    assert spans.exists(), "no span reached the run"
    assert set(spans.values_list("agent_id", flat=True)) == {live_agent.agent.pk}
    kinds = list(spans.values_list("kind", flat=True))
    # Three model turns and two tool calls (the refused refund is still a tool span, in error).
    assert kinds.count("llm") == 3
    tools = spans.filter(kind="tool").order_by("start_time")
    assert list(tools.values_list("tool_name", flat=True)) == ["crm_lookup", "payment_refund"]
    lookup, refund = tools
    assert "c-42" in lookup.arguments and "Ada Lovelace" in lookup.result
    # Tether refused the refund: the tool span ends in error with Tether's reason.
    assert refund.status == "error" and "tool_not_granted" in refund.status_message
    llm_tokens = sorted(spans.filter(kind="llm").values_list("input_tokens", "output_tokens"))
    assert llm_tokens == [(100, 20), (150, 20), (200, 20)]
    # One graph invocation is one trace, rolled up and linked to the run.
    trace = Trace.objects.get(run_id=run.id)
    assert trace.span_count == spans.count()
    assert (trace.input_tokens, trace.output_tokens) == (450, 60)
