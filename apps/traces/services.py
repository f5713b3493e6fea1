"""Writes for the trace fabric: storing an OTLP export, the ingest keys that may send one, and
the legal holds that keep spans from retention (retention itself: apps/traces/retention.py)."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from apps.accounts.models import User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.db import fetch_all, fetch_one
from apps.common.errors import ApplicationError, NotPermitted
from apps.common.tokens import IssuedToken, digest_matches, issue_token, parse_lookup
from apps.registry.constants import Environment
from apps.registry.models import Agent
from apps.registry.tool_costs import tool_costs
from apps.runtime.models import AgentCredential, Run
from apps.runtime.services import LAST_USED_RESOLUTION, Unauthenticated

from . import hooks, live, partitions
from .constants import INGEST_KEY_KIND, INGEST_KEY_NAME_MAX, MESSAGE_MAX
from .costing import span_cost
from .models import IngestKey, LegalHold, UnregisteredAgent
from .otlp import SpanRecord, SpanRejected, attributes_dict, map_span, resource_facts
from .rollups import traces_merge
from .storage import SpanRow, spans_insert

# How many distinct rejection reasons the exporter is told; the count is always exact.
REASONS_SHOWN = 5
# The unregistered-agent name of spans sent with an ingest key that name nothing at all.
ANONYMOUS_SENDER = "unknown_service"
_new_row = tuple.__new__
assert (
    SpanRecord._fields[:5] + SpanRecord._fields[9:] == SpanRow._fields[:5] + SpanRow._fields[12:-3]
)


@dataclass
class IngestResult:
    """``accepted``: spans mapped and stored (now or by an earlier export of the same spans);
    ``stored``: those this export inserted (a retried export stores nothing twice)."""

    accepted: int = 0
    stored: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.accepted - self.stored

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

    Agents and runs are resolved once per export (one query each), whatever the number of
    spans. Storage is apps/traces/storage.py: binary ``COPY`` on PostgreSQL, skipping spans a
    previous export already stored; the day partitions the spans need are made first, in
    their own short transaction (apps/traces/partitions.py). Rollups, unregistered-agent counts
    and live views see only the spans this export really inserted.

    Nothing is dropped silently: a span either becomes a row (or was one already) or is counted
    in the result (``partial_success.rejected_spans``) with its reason.
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
        resource = resource_facts(attributes_dict(resource_spans.resource.attributes))
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

    rows, unregistered = _rows(
        records,
        credential=credential,
        ingest_key=ingest_key,
        default_environment=default_environment,
    )
    partitions.partitions_ensure({row.start_time.date() for row in rows})
    with transaction.atomic():
        inserted = spans_insert(rows)
        traces_merge(inserted)
        hooks.spans_stored(inserted)
        seen: Counter[str] = Counter()
        seen_env: dict[str, str] = {}
        for row in inserted:
            name = unregistered.get(id(row))
            if name is not None:
                seen[name] += 1
                seen_env[name] = row.environment
        for name, count in sorted(seen.items()):
            _unregistered_seen(name=name, count=count, environment=seen_env[name])
        # Live views: after the commit, wake the pages watching these runs and traces (one
        # message per run or trace, only if watched; a failure there never fails the ingest).
        live.spans_stored_on_commit(inserted)
    result.accepted = len(rows)
    result.stored = len(inserted)
    return result


def _rows(
    records: list[SpanRecord],
    *,
    credential: AgentCredential | None,
    ingest_key: IngestKey | None,
    default_environment: str,
) -> tuple[list[SpanRow], dict[int, str]]:
    """The rows to store, and ``id(row)`` -> the unregistered agent name for rows naming one."""
    agents = _agents_by_slug(records)
    run_agents = _run_agents(records, agent_id=credential.agent_id if credential else None)
    credential_pk = credential.pk if credential else None
    ingest_key_pk = ingest_key.pk if ingest_key else None
    received_at = timezone.now()
    tools = tool_costs()
    # Spans of one export name few distinct agents: resolve each identity once.
    resolved: dict[tuple[str, str, str], tuple[int | None, str, bool]] = {}
    rows: list[SpanRow] = []
    unregistered: dict[int, str] = {}
    for record in records:
        identity = (record.agent_id, record.agent_name, record.service_name)
        found = resolved.get(identity)
        if found is None:
            found = resolved[identity] = _resolve_identity(record, agents, credential)
        agent_pk, sent_as, is_unregistered = found
        run_pk, run_agent_pk = run_agents.get(record.run_ref, (None, None))
        if credential is None and run_agent_pk != agent_pk:
            run_pk = None  # sent with an ingest key: only a run of the agent the span names
        # SpanRecord is laid out as the row where they match: slices, one C call per span.
        row = _new_row(
            SpanRow,
            (
                *record[:5],  # trace_id, span_id, parent_span_id, name, kind
                agent_pk,
                sent_as,
                credential_pk,
                ingest_key_pk,
                run_pk,
                record.run_ref,
                record.environment or default_environment,
                *record[9:],  # service_name ... events
                received_at,
                *span_cost(record, tools),
            ),
        )
        rows.append(row)
        if is_unregistered:
            unregistered[id(row)] = sent_as or ANONYMOUS_SENDER
    return rows, unregistered


def _resolve_identity(
    record: SpanRecord, agents: dict[str, int], credential: AgentCredential | None
) -> tuple[int | None, str, bool]:
    """(agent pk, the name as sent, whether it is an unregistered agent) for one identity."""
    agent_pk = _resolve_agent(record, agents)
    sent_as = record.agent_name or record.agent_id or record.service_name
    if agent_pk is not None:
        return agent_pk, sent_as, False
    if record.agent_id or record.agent_name or not _is_anonymous_service(sent_as):
        return None, sent_as, True
    if credential is not None:
        # No agent identity at all: the credential that sent it is the best witness.
        return credential.agent_id, sent_as, False
    # An ingest key vouches for no agent: the admin must learn that something sends spans
    # that name nobody.
    return None, sent_as, True


def _agents_by_slug(records: list[SpanRecord]) -> dict[str, int]:
    values = {v for r in records for v in (r.agent_id, r.agent_name, r.service_name) if v}
    wanted = sorted({candidate for value in values for candidate in _slug_candidates(value)})
    if not wanted:
        return {}
    if connection.vendor == "postgresql":  # once per export: a prepared statement, no ORM
        table = Agent._meta.db_table
        return dict(fetch_all(f"SELECT slug, id FROM {table} WHERE slug = ANY(%s)", [wanted]))
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
    for ref in {record.run_ref for record in records if record.run_ref}:
        try:
            parsed[ref] = uuid.UUID(ref)
        except ValueError:
            continue
    if not parsed:
        return {}
    if connection.vendor == "postgresql":  # once per export: a prepared statement, no ORM
        sql = f"SELECT id, agent_id FROM {Run._meta.db_table} WHERE id = ANY(%s)"
        rows = fetch_all(
            sql + (" AND agent_id = %s" if agent_id is not None else ""),
            [list(parsed.values()), *([agent_id] if agent_id is not None else [])],
        )
        found = dict(rows)
    else:
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
    key = _ingest_key_by_lookup(lookup) if lookup else None
    if key is None or not digest_matches(plaintext, key.digest):
        raise Unauthenticated("Invalid ingest key.")
    if key.revoked_at is not None:
        raise Unauthenticated("This ingest key was revoked.")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


_KEY_FIELDS = [f.attname for f in IngestKey._meta.concrete_fields]
_KEY_COLUMNS = ", ".join(str(f.column) for f in IngestKey._meta.concrete_fields)


def _ingest_key_by_lookup(lookup: str) -> IngestKey | None:
    """Asked once per export: on PostgreSQL a prepared statement instead of the ORM's query
    (the instance is the ORM's all the same, as loaded from the database)."""
    if connection.vendor != "postgresql":
        return IngestKey.objects.filter(lookup=lookup).first()
    table = IngestKey._meta.db_table
    row = fetch_one(f"SELECT {_KEY_COLUMNS} FROM {table} WHERE lookup = %s", [lookup])
    return None if row is None else IngestKey.from_db(connection.alias, _KEY_FIELDS, row)


# --- legal holds -----------------------------------------------------------------------------

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _require_admin_for_holds(actor: User) -> None:
    if not scope_of(actor).is_admin:
        raise NotPermitted("Only admins place and release legal holds.")


def _hold_summary(hold: LegalHold) -> dict[str, Any]:
    return {
        "run": str(hold.run_id) if hold.run_id else None,
        "trace_id": hold.trace_id,
        "reason": hold.reason,
        "released_at": hold.released_at,
        "release_reason": hold.release_reason,
    }


@transaction.atomic
def legal_hold_place(
    *, actor: User, reason: str, run: Run | None = None, trace_id: str = ""
) -> LegalHold:
    """Keep every span of ``run`` (and of its traces) and/or of ``trace_id`` whatever retention
    says, until released (admins only; audited as ``traces.legal_hold.placed``)."""
    _require_admin_for_holds(actor)
    reason = (reason or "").strip()
    if not reason or len(reason) > MESSAGE_MAX:
        raise ApplicationError(
            f"Say why the spans are held (1-{MESSAGE_MAX} characters): the incident, the case.",
            details={"reason": ["Required."]},
        )
    trace_id = (trace_id or "").strip().lower()
    if run is None and not trace_id:
        raise ApplicationError(
            "Name the run or the trace to hold.", details={"run": ["Name a run or a trace."]}
        )
    if trace_id and (not _TRACE_ID.match(trace_id) or not trace_id.strip("0")):
        raise ApplicationError(
            "A trace id is 32 hexadecimal characters (as OTLP/JSON writes it), not all zero.",
            details={"trace_id": ["Not a trace id."]},
        )
    return legal_hold_create(
        run=run,
        trace_id=trace_id,
        reason=reason,
        placed_by=actor,
        placed_by_name=actor.get_username(),
    )


def legal_hold_create(
    *,
    reason: str,
    placed_by: User | None,
    placed_by_name: str,
    run: Run | None = None,
    trace_id: str = "",
) -> LegalHold:
    """Place a hold with no permission check: for callers that decided already (an admin
    through :func:`legal_hold_place`, the kill switch for the runs it stops). Audited."""
    hold = LegalHold.objects.create(
        run=run,
        trace_id=trace_id,
        reason=reason,
        placed_by=placed_by,
        placed_by_name=placed_by_name,
        placed_at=timezone.now(),
    )
    audit_record(
        actor=Actor.user(placed_by) if placed_by is not None else Actor.system(placed_by_name),
        action="traces.legal_hold.placed",
        target_type="legal_hold",
        target_id=hold.pk,
        target_repr=str(hold),
        after=_hold_summary(hold),
        message=reason,
    )
    return hold


@transaction.atomic
def legal_hold_release(*, actor: User, hold: LegalHold, reason: str = "") -> LegalHold:
    """End a hold (admins only; audited as ``traces.legal_hold.released``): from the next
    retention run on, its spans are kept only as long as their environment keeps spans.
    Releasing a released hold changes nothing."""
    _require_admin_for_holds(actor)
    locked = LegalHold.objects.select_for_update().get(pk=hold.pk)
    if locked.released_at is not None:
        return locked
    before = _hold_summary(locked)
    locked.released_at = timezone.now()
    locked.released_by = actor
    locked.released_by_name = actor.get_username()
    locked.release_reason = (reason or "").strip()[:MESSAGE_MAX]
    locked.save(update_fields=["released_at", "released_by", "released_by_name", "release_reason"])
    audit_record(
        actor=Actor.user(actor),
        action="traces.legal_hold.released",
        target_type="legal_hold",
        target_id=locked.pk,
        target_repr=str(locked),
        before=before,
        after=_hold_summary(locked),
        message=locked.release_reason,
    )
    return locked
