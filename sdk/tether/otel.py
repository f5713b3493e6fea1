"""Tie OpenTelemetry spans to the Tether run they happen in.

    from opentelemetry.sdk.trace import TracerProvider
    from tether.otel import RunSpanProcessor

    provider = TracerProvider(...)
    provider.add_span_processor(RunSpanProcessor())   # before the exporting processor

Every span started inside ``with client.run(...)`` (sync or async) then carries
``tether.run.id`` and ``gen_ai.agent.id``, so Tether files it, whatever instrumentor made it
(OpenInference, OpenLLMetry, the GenAI contrib packages), into that run's timeline next to the
run's decisions. Needs ``opentelemetry-sdk``; the rest of the SDK does not.
"""

from __future__ import annotations

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from ._base import current_run

RUN_ID_ATTRIBUTE = "tether.run.id"
AGENT_ID_ATTRIBUTE = "gen_ai.agent.id"


class RunSpanProcessor(SpanProcessor):
    """Stamps spans with the current Tether run; spans outside a run are left alone."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        run = current_run.get()
        if run is None:
            return
        span.set_attribute(RUN_ID_ATTRIBUTE, run.id)
        if run.agent:
            span.set_attribute(AGENT_ID_ATTRIBUTE, run.agent)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
