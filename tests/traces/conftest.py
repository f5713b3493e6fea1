"""A registered agent with a prod credential, and helpers that build OTLP exports."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from apps.registry import services as registry
from apps.registry.models import Agent
from apps.runtime import services
from apps.runtime.models import AgentCredential

START = 1_764_000_000_000_000_000  # 2025-11-24, in unix nanoseconds


@dataclass
class Sender:
    agent: Agent
    credential: AgentCredential
    secret: str

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"}


@pytest.fixture
def sender(org) -> Sender:
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims triage",
            "slug": "claims-triage",
            "mission": "Triage.",
            "department": org.claims,
            "environments": ["dev", "prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    credential, issued = services.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="prod worker"
    )
    return Sender(agent, credential, issued.plaintext)


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


def make_span(
    name: str = "chat gpt-4o",
    attributes: dict[str, Any] | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    duration_ns: int = 250_000_000,
) -> Span:
    return Span(
        trace_id=trace_id if trace_id is not None else os.urandom(16),
        span_id=span_id if span_id is not None else os.urandom(8),
        parent_span_id=parent_span_id,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=START,
        end_time_unix_nano=START + duration_ns,
        attributes=kvs(attributes or {}),
    )


def export(*spans: Span, resource: dict[str, Any] | None = None) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(kvs(resource or {"service.name": "claims-triage"}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "tests"
    scope_spans.spans.extend(spans)
    return request


def span_at(when: datetime, name: str = "chat gpt-4o", **kwargs: Any) -> Span:
    """``make_span`` starting at ``when`` (an aware datetime) instead of START."""
    span = make_span(name, **kwargs)
    nanos = int(when.timestamp()) * 10**9 + when.microsecond * 1000
    duration = span.end_time_unix_nano - span.start_time_unix_nano
    span.start_time_unix_nano, span.end_time_unix_nano = nanos, nanos + duration
    return span
