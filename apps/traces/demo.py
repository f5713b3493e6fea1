"""Demo runs, so the embedded demo's runs list, timelines and incident reports are not empty.

For a few active agents of the demo organisation: a credential, a run, a real decision for
each granted tool (through the decision service) and one refused, and the run's spans stored
through the ingest service, as an instrumented agent would send them. Loaded once: with any
run in the database it changes nothing.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from jsonschema import Draft202012Validator
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from apps.registry.constants import AgentStatus
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.constants import RunState
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.models import Run

from .services import spans_ingest

DEMO_RUNS = 3
DEMO_ENVIRONMENT = "prod"


def _attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [
        KeyValue(
            key=k,
            value=AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v)),
        )
        for k, v in values.items()
    ]


def _sample(prop: dict[str, Any]) -> Any:
    """A value for one schema property: its enum, the example its description gives, or a plain
    value of its type."""
    if prop.get("enum"):
        return prop["enum"][0]
    example = re.search(r"e\.g\. ([^\s,;]+?)\.?(?:\s|$)", prop.get("description", ""))
    kind = prop.get("type", "string")
    if kind in ("integer", "number"):
        return prop.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        items = prop.get("items") or {}
        return [_sample(items)] if items.get("enum") else []
    return example.group(1) if example else "demo"


def _arguments(schema: dict[str, Any]) -> dict[str, Any] | None:
    """Arguments the tool's input schema accepts, or None when no simple sample does."""
    properties = schema.get("properties") or {}
    names = list(schema.get("required") or []) or list(properties)[:1]
    arguments = {name: _sample(properties.get(name) or {}) for name in names}
    return arguments if Draft202012Validator(schema).is_valid(arguments) else None


def _provider(model: str) -> str:
    return "anthropic" if model.startswith("claude") else "openai"


def _spans(run: Run, agent: Agent, tools: list[str]) -> ExportTraceServiceRequest:
    trace_id, root_id = os.urandom(16), os.urandom(8)
    # The spans fill the run so far, in proportion: the agent, its model call, then its tools.
    start = int(run.started_at.timestamp()) * 10**9 + run.started_at.microsecond * 1000
    width = max(time.time_ns() - start, 1_000_000)

    def at(fraction: float) -> int:
        return start + int(width * fraction)

    spans = [
        PbSpan(
            trace_id=trace_id, span_id=root_id, name=f"invoke_agent {agent.slug}",
            start_time_unix_nano=at(0), end_time_unix_nano=at(1),
            attributes=_attributes({"gen_ai.operation.name": "invoke_agent",
                                    "tether.run.id": str(run.pk)}),
        ),
        PbSpan(
            trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
            name=f"chat {agent.default_model or 'gpt-4o'}",
            start_time_unix_nano=at(0.02), end_time_unix_nano=at(0.4),
            attributes=_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.request.model": agent.default_model or "gpt-4o",
                "gen_ai.provider.name": _provider(agent.default_model or "gpt-4o"),
                "gen_ai.usage.input_tokens": 1840,
                "gen_ai.usage.output_tokens": 212, "tether.run.id": str(run.pk),
            }),
        ),
    ]  # fmt: skip
    for i, tool in enumerate(tools):
        begin, end = at(0.42 + i * 0.55 / len(tools)), at(0.42 + (i + 0.8) * 0.55 / len(tools))
        spans.append(
            PbSpan(
                trace_id=trace_id, span_id=os.urandom(8), parent_span_id=root_id,
                name=f"execute_tool {tool}",
                start_time_unix_nano=begin, end_time_unix_nano=end,
                attributes=_attributes({"gen_ai.operation.name": "execute_tool",
                                        "gen_ai.tool.name": tool, "tether.run.id": str(run.pk)}),
            )
        )  # fmt: skip
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(_attributes({"service.name": agent.slug}))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def demo_runs_load(*, actor: Any) -> int:
    """Run a few demo agents once; returns how many runs were made (0 when runs exist)."""
    if Run.objects.exists():
        return 0
    agents = Agent.objects.filter(status=AgentStatus.ACTIVE).order_by("slug")
    made = 0
    for agent in agents:
        grants = [
            g
            for g in agent.grants.select_related("tool")
            if DEMO_ENVIRONMENT in g.environments
            and _arguments(g.tool.input_schema or {}) is not None
        ]
        if DEMO_ENVIRONMENT not in agent.environments or not grants:
            continue
        credential, _ = runtime.credential_issue(
            actor=actor, agent=agent, environment=DEMO_ENVIRONMENT, name="demo"
        )
        run, _ = runtime.run_start(credential=credential, task=f"Demo: {agent.mission[:200]}")
        for grant in grants[:3]:
            decide(
                run=run,
                request=DecisionRequest(
                    action="tool.invoke",
                    tool=grant.tool.slug,
                    tool_action=grant.actions[0],
                    arguments=_arguments(grant.tool.input_schema or {}) or {},
                ),
            )
        decide(  # a step outside its grants: refused, as it should be
            run=run,
            request=DecisionRequest(action="tool.invoke", tool=grants[0].tool.slug,
                                    tool_action="delete"),
        )  # fmt: skip
        spans_ingest(
            request=_spans(run, agent, [g.tool.slug for g in grants[:3]]), credential=credential
        )
        runtime.run_finish(run=run, state=RunState.FINISHED, outcome="demo")
        made += 1
        if made == DEMO_RUNS:
            break
    return made
