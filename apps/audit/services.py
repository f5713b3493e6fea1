"""The audit trail's single writer, and the recording of chain verifications.

Call ``audit_record`` inside the transaction of the change it records. It appends the event to
the hash chain; how concurrent writers are kept in one chain is explained on ``_next_link``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from apps.common.db import fetch_one
from apps.common.errors import NotPermitted
from apps.common.request_context import get_request_id

from . import selectors
from .chain import canonical_record, normalise_json, record_hash
from .constants import CHAIN_CHUNK_SIZE, CHAIN_LOCK_KEY, GENESIS_HASH
from .models import ActorType, AuditEvent, AuditVerification


@dataclass(frozen=True)
class Actor:
    """Who did it: a person, an agent or Tether itself. ``name`` is frozen into the record."""

    type: str
    id: str
    name: str

    @classmethod
    def system(cls, name: str = "tether") -> Actor:
        return cls(type=ActorType.SYSTEM, id="", name=name)

    @classmethod
    def user(cls, user: Any) -> Actor:
        return cls(type=ActorType.USER, id=str(user.pk), name=user.get_username())


def _jsonable(value: Any) -> Any:
    """Round-trip through Django's encoder so dates, decimals and UUIDs store as JSON."""
    import json

    if value is None:
        return None
    return normalise_json(json.loads(json.dumps(value, cls=DjangoJSONEncoder)))


# The head of the chain and the next id, read in one statement once the lock is held.
_PG_NEXT_LINK = (
    "SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'id')), head.seq, head.hash"
    " FROM (SELECT 1) AS one LEFT JOIN LATERAL"
    " (SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1) AS head ON true"
)
_SQLITE_NEXT_LINK = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_auditevent'), 0),"
    " COALESCE((SELECT MAX(id) FROM audit_auditevent), 0)) + 1, head.seq, head.hash"
    " FROM (SELECT 1) AS one LEFT JOIN"
    " (SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1) AS head"
)


def _next_link() -> tuple[int, int, str]:
    """The new event's id, seq and prev_hash. Call inside a transaction.

    PostgreSQL: a transaction-scoped advisory lock with a fixed key serialises audit writers
    from here until their transaction ends, so no two can read the same head and the chain
    order is the commit order. The head is read in a statement *after* the lock is granted
    (a statement's snapshot is taken when it starts, so it sees the previous holder's commit),
    and the id is drawn inside the lock too, so ids grow with ``seq``. A unique ``seq`` backs
    this up: a writer that somehow chained from a stale head fails instead of forking.

    SQLite (the embedded default) has one writer at a time already: Tether opens its
    transactions with ``BEGIN IMMEDIATE``, which takes the database's write lock up front.
    """
    if connection.vendor == "postgresql":
        fetch_one("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        row = fetch_one(_PG_NEXT_LINK, [])
    else:
        with connection.cursor() as cursor:
            cursor.execute(_SQLITE_NEXT_LINK)
            row = cursor.fetchone()
    assert row is not None
    event_id, head_seq, head_hash = row
    if head_seq is None:
        return int(event_id), 1, GENESIS_HASH
    return int(event_id), int(head_seq) + 1, str(head_hash)


def audit_record(
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | int,
    target_repr: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    message: str = "",
) -> AuditEvent:
    """Append one event to the chain, in the caller's transaction (or a new one).

    The chain lock is held until that transaction ends, so call this as late in it as the
    change allows: audited writes queue behind one another for that long.
    """
    event = AuditEvent(
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name[:200],
        request_id=get_request_id(),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target_repr=target_repr[:300],
        before=_jsonable(before),
        after=_jsonable(after),
        message=message,
    )
    # Joins the caller's transaction without a savepoint; outside one it opens one, so the
    # lock lasts until this event is committed (in autocommit it would end with its statement).
    with transaction.atomic(savepoint=False):
        event.id, event.seq, event.prev_hash = _next_link()
        event.occurred_at = timezone.now()  # taken in the lock: time follows the chain order
        event.hash = record_hash(canonical_record(event))
        event.save(force_insert=True)
    return event


def audit_chain_verify(
    *,
    actor: Any | None,
    since_id: int | None = None,
    chunk_size: int = CHAIN_CHUNK_SIZE,
    record: bool = True,
) -> tuple[selectors.ChainReport, AuditVerification | None]:
    """Recompute the chain (from event ``since_id`` on, or all of it) and record the result.

    ``actor`` is the person who asked (admins and organisation-wide auditors only), or None for
    Tether itself (``manage.py verify_audit``). ``record=False`` only reads.
    """
    if actor is not None and not selectors.can_read_audit_log(actor):
        raise NotPermitted("Only admins and organisation-wide auditors verify the audit chain.")
    who = Actor.user(actor) if actor is not None else Actor.system("verify_audit")
    started = timezone.now()
    report = selectors.chain_verify(since_id=since_id, chunk_size=chunk_size)
    if not record:
        return report, None
    broken = report.broken
    verification = AuditVerification.objects.create(
        started_at=started,
        finished_at=timezone.now(),
        actor_type=who.type,
        actor_id=who.id,
        actor_name=who.name[:200],
        since_id=since_id,
        ok=report.ok,
        events_checked=report.checked,
        head_seq=report.head_seq,
        head_event_id=report.head_id,
        head_hash=report.head_hash if report.head_seq else "",
        broken_kind=broken.kind if broken else "",
        broken_event_id=broken.event_id if broken else None,
        broken_seq=broken.seq if broken else None,
        detail=broken.message if broken else "",
    )
    return report, verification
