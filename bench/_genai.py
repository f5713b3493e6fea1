"""Realistic GenAI spans as agent frameworks export them, built once per bench run.

One agent turn is a trace of about 16 spans: ``invoke_agent`` at the root, an
``invoke_workflow`` under it, then planning and answering ``chat`` calls (input and output
messages as JSON, token usage, cached and reasoning tokens), ``execute_tool`` calls (tool
arguments and results), a retrieval (OpenInference ``RETRIEVER`` with its documents), and now
and then an OpenInference LLM span (LangChain-style ``llm.*`` attributes) and a failed tool
call. Resources carry what the OpenTelemetry SDK sends (service, SDK, host, process,
environment). Spans are a little under 2 KB of attributes on average; an LLM span several KB.

``export_bodies()`` returns serialized ``ExportTraceServiceRequest`` bodies of ``batch`` spans
each (whole traces, never split), with ids unique across every body: no two bodies dedup
against each other. The same bodies go to Tether and to the references.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

MODELS = [
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("aws.bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("gcp.vertex_ai", "gemini-2.0-flash"),
]
TOOLS = [
    ("lookup_claim", {"claim_id": "CLM-{n:06d}", "include_history": True}),
    ("search_policies", {"query": "water damage exclusions {n}", "limit": 5}),
    ("update_ticket", {"ticket": "INC-{n:05d}", "status": "triaged", "priority": "p2"}),
    ("send_email", {"to": "customer{n}@example.com", "template": "claim-received"}),
    ("get_customer", {"customer_id": "CUS-{n:07d}"}),
]
WORDS = [
    "the",
    "claim",
    "policy",
    "customer",
    "coverage",
    "deductible",
    "adjuster",
    "water",
    "damage",
    "roof",
    "inspection",
    "estimate",
    "invoice",
    "approved",
    "pending",
    "escalate",
    "review",
    "document",
    "photo",
    "report",
    "date",
    "amount",
    "payment",
    "limit",
    "exclusion",
    "clause",
    "incident",
    "vehicle",
    "property",
    "liability",
    "settlement",
]


def _value(v: object) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[_value(x) for x in v]))
    return AnyValue(string_value=str(v))


def _kvs(attrs: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attrs.items()]


@dataclass
class _Ids:
    rng: random.Random

    def trace(self) -> bytes:
        return self.rng.randbytes(16)

    def span(self) -> bytes:
        return self.rng.randbytes(8)


class Generator:
    """Deterministic (seeded) traces for ``agents`` agent slugs and optional run ids."""

    def __init__(
        self,
        *,
        agents: list[str],
        runs: dict[str, list[str]] | None = None,
        seed: int = 4,
        start_ns: int,
        environments: tuple[str, ...] = ("prod", "prod", "prod", "staging", "dev"),
    ):
        self.rng = random.Random(seed)
        self.ids = _Ids(self.rng)
        self.agents = agents
        self.runs = runs or {}
        self.start_ns = start_ns
        self.environments = environments
        self.counter = 0

    def _text(self, words: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(words))

    def _messages(self, turns: int) -> str:
        messages = [{"role": "system", "parts": [{"type": "text", "content": self._text(40)}]}]
        for i in range(turns):
            role = "user" if i % 2 == 0 else "assistant"
            messages.append({"role": role, "parts": [{"type": "text", "content": self._text(45)}]})
        return json.dumps(messages)

    def _span(
        self,
        trace_id: bytes,
        parent: bytes,
        name: str,
        start: int,
        duration: int,
        attrs: dict[str, object],
        *,
        error: str = "",
    ) -> Span:
        span = Span(
            trace_id=trace_id,
            span_id=self.ids.span(),
            parent_span_id=parent,
            name=name,
            kind=Span.SPAN_KIND_CLIENT if parent else Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
            attributes=_kvs(attrs),
        )
        if error:
            span.status.code = Status.STATUS_CODE_ERROR
            span.status.message = error
            event = span.events.add()
            event.name = "exception"
            event.time_unix_nano = start + duration
            event.attributes.extend(
                _kvs({"exception.type": "TimeoutError", "exception.message": error})
            )
        else:
            span.status.code = Status.STATUS_CODE_OK
        return span

    def trace(self, agent: str) -> list[Span]:
        """One agent turn: 16 spans."""
        rng, n = self.rng, self.counter
        self.counter += 1
        trace_id = self.ids.trace()
        start = self.start_ns + n * 37_000_000 + rng.randrange(1_000_000)
        conversation = f"conv-{n // 4:08d}"
        root_attrs: dict[str, object] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.agent.id": agent,
            "gen_ai.agent.description": "Triages incoming insurance claims and routes them.",
            "gen_ai.conversation.id": conversation,
            "input.value": self._text(60),
            "output.value": self._text(80),
        }
        runs = self.runs.get(agent)
        if runs:
            root_attrs["tether.run.id"] = runs[n % len(runs)]
        spans = [
            self._span(trace_id, b"", f"invoke_agent {agent}", start, 9_000_000_000, root_attrs)
        ]
        root = spans[0].span_id
        workflow = self._span(
            trace_id,
            root,
            "invoke_workflow triage",
            start + 1_000_000,
            8_900_000_000,
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": conversation,
                "workflow.step_count": 14,
            },
        )
        spans.append(workflow)
        at = start + 2_000_000
        for step in range(14):
            kind = step % 7
            provider, model = MODELS[(n + step) % len(MODELS)]
            parent = workflow.span_id
            if kind in (0, 3, 6):  # chat
                turns = 2 + (step % 3)
                inputs = rng.randrange(800, 6000)
                outputs = rng.randrange(50, 900)
                attrs: dict[str, object] = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": provider,
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": model,
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.request.max_tokens": 1024,
                    "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
                    "gen_ai.response.finish_reasons": ["stop"],
                    "gen_ai.usage.input_tokens": inputs,
                    "gen_ai.usage.output_tokens": outputs,
                    "gen_ai.usage.cache_read.input_tokens": inputs // 3,
                    "gen_ai.agent.name": agent,
                    "gen_ai.conversation.id": conversation,
                    "server.address": "api.example.com",
                    "server.port": 443,
                    "gen_ai.input.messages": self._messages(turns),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": self._text(50)}],
                            }
                        ]
                    ),
                }
                if model.startswith("gpt-4o-2024"):
                    attrs["gen_ai.usage.reasoning.output_tokens"] = outputs // 4
                span = self._span(trace_id, parent, f"chat {model}", at, 900_000_000, attrs)
            elif kind in (1, 4):  # tool
                tool, args = TOOLS[(n + step) % len(TOOLS)]
                arguments = {
                    k: (v.format(n=n) if isinstance(v, str) else v) for k, v in args.items()
                }
                failed = (n + step) % 23 == 0
                span = self._span(
                    trace_id,
                    parent,
                    f"execute_tool {tool}",
                    at,
                    120_000_000,
                    {
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": tool,
                        "gen_ai.tool.type": "function",
                        "gen_ai.tool.call.id": f"call_{rng.getrandbits(48):012x}",
                        "gen_ai.tool.call.arguments": json.dumps(arguments),
                        "gen_ai.tool.call.result": ""
                        if failed
                        else json.dumps({"ok": True, "data": self._text(90)}),
                        "gen_ai.agent.name": agent,
                    },
                    error="upstream timed out after 30s" if failed else "",
                )
            elif kind == 2:  # retrieval (OpenInference)
                documents = [
                    {
                        "document.id": f"doc-{rng.randrange(10**6)}",
                        "document.score": 0.9 - i / 10,
                        "document.content": self._text(40),
                    }
                    for i in range(3)
                ]
                span = self._span(
                    trace_id,
                    parent,
                    "retrieve policies",
                    at,
                    60_000_000,
                    {
                        "openinference.span.kind": "RETRIEVER",
                        "input.value": self._text(12),
                        "retrieval.documents": json.dumps(documents),
                        "gen_ai.agent.name": agent,
                        "session.id": conversation,
                    },
                )
            else:  # an OpenInference LLM span, as LangChain instrumentation sends it
                span = self._span(
                    trace_id,
                    parent,
                    "ChatOpenAI",
                    at,
                    700_000_000,
                    {
                        "openinference.span.kind": "LLM",
                        "llm.model_name": model,
                        "llm.provider": provider,
                        "llm.token_count.prompt": rng.randrange(500, 3000),
                        "llm.token_count.completion": rng.randrange(20, 400),
                        "llm.invocation_parameters": json.dumps(
                            {"temperature": 0, "stream": False}
                        ),
                        "input.value": self._text(70),
                        "input.mime_type": "text/plain",
                        "output.value": self._text(40),
                        "agent.name": agent,
                        "session.id": conversation,
                    },
                )
            spans.append(span)
            at += span.end_time_unix_nano - span.start_time_unix_nano + 1_000_000
        return spans

    def resource(self, agent: str, environment: str) -> list[KeyValue]:
        return _kvs(
            {
                "service.name": f"{agent}-service",
                "service.version": "1.8.2",
                "deployment.environment.name": environment,
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                "telemetry.sdk.version": "1.38.0",
                "host.name": f"worker-{self.rng.randrange(40):02d}",
                "process.pid": self.rng.randrange(2, 60000),
                "process.runtime.name": "cpython",
                "process.runtime.version": "3.12.7",
            }
        )

    def export(self, spans_per_batch: int = 512) -> ExportTraceServiceRequest:
        """One export: whole traces, grouped by agent (one resource per agent service)."""
        request = ExportTraceServiceRequest()
        count = 0
        while count < spans_per_batch:
            agent = self.agents[self.rng.randrange(len(self.agents))]
            environment = self.environments[self.rng.randrange(len(self.environments))]
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.extend(self.resource(agent, environment))
            scope = resource_spans.scope_spans.add()
            scope.scope.name = "opentelemetry.instrumentation.openai_agents"
            scope.scope.version = "0.1.0"
            for _ in range(2):  # two turns of the same agent per resource
                spans = self.trace(agent)[: spans_per_batch - count]
                scope.spans.extend(spans)
                count += len(spans)
                if count >= spans_per_batch:
                    break
        return request


def export_bodies(
    *,
    count: int,
    agents: list[str],
    runs: dict[str, list[str]] | None = None,
    start_ns: int,
    batch: int = 512,
    seed: int = 4,
) -> list[bytes]:
    generator = Generator(agents=agents, runs=runs, seed=seed, start_ns=start_ns)
    return [generator.export(batch).SerializeToString() for _ in range(count)]
