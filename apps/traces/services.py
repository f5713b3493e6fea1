"""Writes for the trace fabric: storing an OTLP export."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apps.registry.models import Agent
from apps.runtime.models import AgentCredential, Run

from .constants import INSERT_BATCH
from .models import Span, UnregisteredAgent
from .otlp import SpanRecord, SpanRejected, attributes_dict, map_span

# How many distinct rejection reasons the exporter is told; the count is always exact.
REASONS_SHOWN = 5


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        return f"{self.rejected} span(s) rejected: " + "; ".join(self.reasons)


def _slug_candidates(value: str) -> list[str]:
    return [c for c in dict.fromkeys([value.lower(), slugify(value)]) if c]


def _is_anonymous_service(name: str) -> bool:
    """The SDKs' default when nobody set ``service.name``: it names no agent."""
    return not name or name.startswith("unknown_service")


def spans_ingest(
    *, credential: AgentCredential, request: ExportTraceServiceRequest
) -> IngestResult:
    """Map and store every span of one export, in one transaction; count the ones refused.

    Storage is Django's ``bulk_create`` in batches rather than PostgreSQL ``COPY``: it runs
    unchanged on the embedded SQLite default, keeps the ORM's JSON encoding and defaults, and
    is one multi-row INSERT per batch. ``COPY`` (psycopg's ``cursor.copy``) is the faster
    path on PostgreSQL and belongs with the partitioned table in the storage slice.

    Nothing is dropped silently: a span either becomes a row or is counted in the result
    (``partial_success.rejected_spans``) with its reason.
    """
    result = IngestResult()
    records: list[SpanRecord] = []
    reasons: Counter[str] = Counter()
    for resource_spans in request.resource_spans:
        resource = attributes_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for pb_span in scope_spans.spans:
                try:
                    records.append(map_span(pb_span, resource, scope_name))
                except SpanRejected as exc:
                    reasons[str(exc)] += 1
    result.rejected = sum(reasons.values())
    result.reasons = [f"{reason} ({n})" for reason, n in reasons.most_common(REASONS_SHOWN)]
    if not records:
        return result

    agents = _agents_by_slug(records)
    runs = _runs_of_agent(records, agent_id=credential.agent_id)
    rows: list[Span] = []
    unregistered: Counter[str] = Counter()
    unregistered_env: dict[str, str] = {}
    for record in records:
        agent_pk = _resolve_agent(record, agents)
        sent_as = record.agent_name or record.agent_id or record.service_name
        environment = record.environment or credential.environment
        if agent_pk is None:
            if record.agent_id or record.agent_name or not _is_anonymous_service(sent_as):
                unregistered[sent_as] += 1
                unregistered_env[sent_as] = environment
            else:
                # No agent identity at all: the credential that sent it is the best witness.
                agent_pk = credential.agent_id
        rows.append(
            Span(
                trace_id=record.trace_id,
                span_id=record.span_id,
                parent_span_id=record.parent_span_id,
                name=record.name,
                kind=record.kind,
                agent_id=agent_pk,
                agent_name=sent_as,
                credential_id=credential.pk,
                run_id=runs.get(record.run_ref),
                run_ref=record.run_ref,
                environment=environment,
                service_name=record.service_name,
                scope_name=record.scope_name,
                model=record.model,
                provider=record.provider,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cached_tokens=record.cached_tokens,
                reasoning_tokens=record.reasoning_tokens,
                tool_name=record.tool_name,
                arguments=record.arguments,
                result=record.result,
                status=record.status,
                status_message=record.status_message,
                start_time=record.start_time,
                end_time=record.end_time,
                duration_ns=record.duration_ns,
                conversation_id=record.conversation_id,
                attributes=record.attributes,
                resource=record.resource,
                events=record.events,
            )
        )
    with transaction.atomic():
        Span.objects.bulk_create(rows, batch_size=INSERT_BATCH)
        for name, count in sorted(unregistered.items()):
            _unregistered_seen(name=name, count=count, environment=unregistered_env[name])
    result.accepted = len(rows)
    return result


def _agents_by_slug(records: list[SpanRecord]) -> dict[str, int]:
    wanted: set[str] = set()
    for record in records:
        for value in (record.agent_id, record.agent_name, record.service_name):
            wanted.update(_slug_candidates(value))
    if not wanted:
        return {}
    return dict(Agent.objects.filter(slug__in=wanted).values_list("slug", "pk"))


def _resolve_agent(record: SpanRecord, agents: dict[str, int]) -> int | None:
    """``gen_ai.agent.id``, then ``gen_ai.agent.name``, matched as a slug; ``service.name`` only
    when the span names no agent. A sub-agent that names itself and is not registered must not
    be booked to the service it runs in: it is an unregistered agent."""
    named = [record.agent_id, record.agent_name]
    for value in named if any(named) else [record.service_name]:
        for candidate in _slug_candidates(value):
            if candidate in agents:
                return agents[candidate]
    return None


def _runs_of_agent(records: list[SpanRecord], *, agent_id: int) -> dict[str, uuid.UUID]:
    """Run ids sent as ``tether.run.id`` that name a run of the sending credential's agent.

    Only that agent's runs: a credential must not be able to write into another agent's
    timeline. The id as sent is kept in ``run_ref`` either way.
    """
    parsed: dict[str, uuid.UUID] = {}
    for record in records:
        if record.run_ref and record.run_ref not in parsed:
            try:
                parsed[record.run_ref] = uuid.UUID(record.run_ref)
            except ValueError:
                continue
    if not parsed:
        return {}
    found = set(
        Run.objects.filter(pk__in=parsed.values(), agent_id=agent_id).values_list("pk", flat=True)
    )
    return {ref: pk for ref, pk in parsed.items() if pk in found}


def _unregistered_seen(*, name: str, count: int, environment: str) -> None:
    now = timezone.now()
    updated = UnregisteredAgent.objects.filter(name=name).update(
        span_count=F("span_count") + count, last_seen_at=now, environment=environment
    )
    if updated:
        return
    try:
        with transaction.atomic():
            UnregisteredAgent.objects.create(
                name=name,
                environment=environment,
                first_seen_at=now,
                last_seen_at=now,
                span_count=count,
            )
    except IntegrityError:
        # Another request created it between our UPDATE and INSERT.
        UnregisteredAgent.objects.filter(name=name).update(
            span_count=F("span_count") + count, last_seen_at=now, environment=environment
        )
