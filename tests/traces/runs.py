"""Runs with spans and decisions for the console's tests: real runs (run_start), spans stored
through the ingest service (so the Trace rollups are the real ones), decisions as rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from apps.registry import services as registry
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.models import AgentCredential, Decision, Run
from apps.traces.services import spans_ingest

from .conftest import export, kvs


@dataclass
class Runner:
    agent: Agent
    credential: AgentCredential
    secret: str


def make_runner(owner: Any, department: Any, slug: str, **data: Any) -> Runner:
    agent = registry.agent_create(
        actor=owner,
        data={
            "name": slug.replace("-", " ").title(),
            "slug": slug,
            "mission": "Triage.",
            "department": department,
            "environments": ["dev", "prod"],
            "status": "active",
            "autonomy_level": 3,
            **data,
        },
    )
    credential, issued = runtime.credential_issue(
        actor=owner, agent=agent, environment="prod", name="prod worker"
    )
    return Runner(agent, credential, issued.plaintext)


def start_run(
    runner: Runner,
    task: str = "Triage claim 42",
    *,
    started_at: datetime | None = None,
    state: str = "",
    ended_after: timedelta | None = None,
) -> Run:
    run, _token = runtime.run_start(credential=runner.credential, task=task)
    changes: dict[str, Any] = {}
    if started_at is not None:
        changes["started_at"] = started_at
    if state:
        changes["state"] = state
        changes["ended_at"] = (started_at or run.started_at) + (ended_after or timedelta(seconds=3))
    if changes:
        Run.objects.filter(pk=run.pk).update(**changes)
        run.refresh_from_db()
    return run


def ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def span(
    name: str,
    *,
    start: datetime,
    ms: float = 100,
    trace_id: bytes,
    span_id: bytes | None = None,
    parent: bytes = b"",
    error: str = "",
    **attributes: Any,
) -> PbSpan:
    """One OTLP span; keyword attributes use ``__`` for dots (``gen_ai__request__model``)."""
    pb = PbSpan(
        trace_id=trace_id,
        span_id=span_id or os.urandom(8),
        parent_span_id=parent,
        name=name,
        kind=PbSpan.SPAN_KIND_INTERNAL,
        start_time_unix_nano=ns(start),
        end_time_unix_nano=ns(start) + int(ms * 1_000_000),
        attributes=kvs({k.replace("__", "."): v for k, v in attributes.items()}),
    )
    if error:
        pb.status.code = pb.status.STATUS_CODE_ERROR
        pb.status.message = error
    return pb


def post(runner: Runner, *spans: PbSpan) -> int:
    result = spans_ingest(credential=runner.credential, request=export(*spans))
    assert result.rejected == 0, result.reasons
    return result.accepted


def a_run_with_a_trace(runner: Runner, run: Run, *, cost_tokens: int = 0) -> dict[str, bytes]:
    """The typical run: an agent span with an LLM call, a retrieval, a tool call that fails,
    all in one trace, linked by ``tether.run.id`` on the root only (children inherit)."""
    trace_id = os.urandom(16)
    root, llm, tool = os.urandom(8), os.urandom(8), os.urandom(8)
    t0 = run.started_at
    post(
        runner,
        span("invoke_agent claims-triage", start=t0 + timedelta(milliseconds=10), ms=2000,
             trace_id=trace_id, span_id=root, gen_ai__operation__name="invoke_agent",
             gen_ai__agent__name=runner.agent.slug, tether__run__id=str(run.pk)),
        span("chat gpt-4o", start=t0 + timedelta(milliseconds=50), ms=700, trace_id=trace_id,
             span_id=llm, parent=root, gen_ai__operation__name="chat",
             gen_ai__request__model="gpt-4o", gen_ai__provider__name="openai",
             gen_ai__usage__input_tokens=1200 + cost_tokens, gen_ai__usage__output_tokens=80),
        span("retrieve policies", start=t0 + timedelta(milliseconds=800), ms=120,
             trace_id=trace_id, parent=root, openinference__span__kind="RETRIEVER"),
        span("execute_tool crm-lookup", start=t0 + timedelta(milliseconds=1000), ms=300,
             trace_id=trace_id, span_id=tool, parent=root, gen_ai__operation__name="execute_tool",
             gen_ai__tool__name="crm-lookup", gen_ai__tool__call__arguments='{"customer_id": "c-1"}',
             error="timeout after 300 ms"),
    )  # fmt: skip
    return {"trace_id": trace_id, "root": root, "llm": llm, "tool": tool}


def decide(
    run: Run,
    disposition: str = "allow",
    *,
    at: datetime | None = None,
    target: str = "crm-lookup",
    reasons: list[str] | None = None,
) -> Decision:
    return Decision.objects.create(
        run=run,
        agent=run.agent,
        environment=run.environment,
        action="tool.invoke",
        target=target,
        tool_action="read",
        disposition=disposition,
        reasons=reasons or (["allowed"] if disposition == "allow" else ["policy_denied"]),
        reasoning="Granted." if disposition == "allow" else "Refunds over 500 need a person.",
        policies=[],
        budgets={},
        created_at=at or timezone.now(),
    )
