"""Writes for the trace fabric: storing an OTLP export, and the ingest keys that may send one."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apps.accounts.models import User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted
from apps.common.tokens import IssuedToken, digest_matches, issue_token, parse_lookup
from apps.registry.constants import Environment
from apps.registry.models import Agent
from apps.runtime.models import AgentCredential, Run
from apps.runtime.services import LAST_USED_RESOLUTION, Unauthenticated

from .constants import INGEST_KEY_KIND, INGEST_KEY_NAME_MAX, INSERT_BATCH
from .models import IngestKey, Span, UnregisteredAgent
from .otlp import SpanRecord, SpanRejected, attributes_dict, map_span
from .rollups import traces_merge

# How many distinct rejection reasons the exporter is told; the count is always exact.
REASONS_SHOWN = 5
# The unregistered-agent name of spans sent with an ingest key that name nothing at all.
ANONYMOUS_SENDER = "unknown_service"


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
    *,
    request: ExportTraceServiceRequest,
    credential: AgentCredential | None = None,
    ingest_key: IngestKey | None = None,
) -> IngestResult:
    """Map and store every span of one export, in one transaction; count the ones refused.

    The sender is an agent credential or an ingest key, exactly one. A credential speaks for its
    agent: a span that names nobody is booked to it, and it may link spans only to its agent's
    runs. An ingest key speaks for no agent: spans are attributed only by what they say, a span
    naming no registered agent is kept with ``agent`` empty and recorded as unregistered, and a
    ``tether.run.id`` is linked only to a run of the agent the span names.

    Storage is Django's ``bulk_create`` in batches rather than PostgreSQL ``COPY``: it runs
    unchanged on the embedded SQLite default, keeps the ORM's JSON encoding and defaults, and
    is one multi-row INSERT per batch. ``COPY`` (psycopg's ``cursor.copy``) is the faster
    path on PostgreSQL and belongs with the partitioned table in the storage slice.

    Nothing is dropped silently: a span either becomes a row or is counted in the result
    (``partial_success.rejected_spans``) with its reason.
    """
    if credential is not None and ingest_key is None:
        default_environment = credential.environment
    elif ingest_key is not None and credential is None:
        default_environment = ingest_key.environment
    else:
        raise ValueError("spans_ingest takes a credential or an ingest key, exactly one.")
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
    run_agents = _run_agents(records, agent_id=credential.agent_id if credential else None)
    rows: list[Span] = []
    unregistered: Counter[str] = Counter()
    unregistered_env: dict[str, str] = {}
    for record in records:
        agent_pk = _resolve_agent(record, agents)
        sent_as = record.agent_name or record.agent_id or record.service_name
        environment = record.environment or default_environment
        if agent_pk is None:
            if record.agent_id or record.agent_name or not _is_anonymous_service(sent_as):
                unregistered[sent_as] += 1
                unregistered_env[sent_as] = environment
            elif credential is not None:
                # No agent identity at all: the credential that sent it is the best witness.
                agent_pk = credential.agent_id
            else:
                # An ingest key vouches for no agent: the admin must learn that something
                # sends spans that name nobody.
                unregistered[sent_as or ANONYMOUS_SENDER] += 1
                unregistered_env[sent_as or ANONYMOUS_SENDER] = environment
        run_pk, run_agent_pk = run_agents.get(record.run_ref, (None, None))
        if credential is None and run_agent_pk != agent_pk:
            run_pk = None  # sent with an ingest key: only a run of the agent the span names
        rows.append(
            Span(
                trace_id=record.trace_id,
                span_id=record.span_id,
                parent_span_id=record.parent_span_id,
                name=record.name,
                kind=record.kind,
                agent_id=agent_pk,
                agent_name=sent_as,
                credential_id=credential.pk if credential else None,
                ingest_key_id=ingest_key.pk if ingest_key else None,
                run_id=run_pk,
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
        traces_merge(rows)
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


def _run_agents(
    records: list[SpanRecord], *, agent_id: int | None
) -> dict[str, tuple[uuid.UUID, int]]:
    """Run ids sent as ``tether.run.id`` that name a run, with the run's agent.

    With ``agent_id`` (a credential's agent) only that agent's runs: a credential must not be
    able to write into another agent's timeline. The id as sent is kept in ``run_ref`` either
    way.
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
    runs = Run.objects.filter(pk__in=parsed.values())
    if agent_id is not None:
        runs = runs.filter(agent_id=agent_id)
    found = dict(runs.values_list("pk", "agent_id"))
    return {ref: (pk, found[pk]) for ref, pk in parsed.items() if pk in found}


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


# --- ingest keys -----------------------------------------------------------------------------


def _require_admin(actor: User) -> None:
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only admins manage ingest keys.")


@transaction.atomic
def ingest_key_issue(
    *, actor: User, name: str, environment: str = ""
) -> tuple[IngestKey, IssuedToken]:
    """Issue an ingest key (admins only); the plaintext is returned once and never stored."""
    _require_admin(actor)
    name = (name or "").strip()
    if not name or len(name) > INGEST_KEY_NAME_MAX:
        raise ApplicationError(
            f"Name the ingest key (1-{INGEST_KEY_NAME_MAX} characters).",
            details={"name": ["Required."]},
        )
    environment = (environment or "").strip()
    if environment and environment not in Environment.values:
        raise ApplicationError(
            f"{environment!r} is not an environment; use one of {', '.join(Environment.values)}"
            " or none.",
            details={"environment": ["Not an environment."]},
        )
    issued = issue_token(INGEST_KEY_KIND)
    key = IngestKey.objects.create(
        name=name,
        environment=environment,
        lookup=issued.lookup,
        digest=issued.digest,
        created_by_name=actor.get_username(),
    )
    audit_record(
        actor=Actor.user(actor),
        action="traces.ingest_key.issued",
        target_type="ingest_key",
        target_id=key.pk,
        target_repr=name,
        after={"name": name, "environment": environment, "lookup": issued.lookup},
    )
    return key, issued


@transaction.atomic
def ingest_key_revoke(*, actor: User, key: IngestKey) -> None:
    """Revoke at once (admins only): the next export sent with it gets 401."""
    _require_admin(actor)
    if key.revoked_at is not None:
        return
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    audit_record(
        actor=Actor.user(actor),
        action="traces.ingest_key.revoked",
        target_type="ingest_key",
        target_id=key.pk,
        target_repr=key.name,
        before={"revoked_at": None},
        after={"revoked_at": key.revoked_at},
    )


def ingest_key_authenticate(plaintext: str) -> IngestKey:
    """The live ingest key this plaintext proves (digest compared in constant time), else
    :class:`Unauthenticated` (401). ``last_used_at`` is written at most once a minute."""
    lookup = parse_lookup(plaintext, INGEST_KEY_KIND)
    key = IngestKey.objects.filter(lookup=lookup).first() if lookup else None
    if key is None or not digest_matches(plaintext, key.digest):
        raise Unauthenticated("Invalid ingest key.")
    if key.revoked_at is not None:
        raise Unauthenticated("This ingest key was revoked.")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
