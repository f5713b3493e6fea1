"""Reads of the audit trail. The log is organisation-wide, so it is for admins and
organisation-wide auditors: a department-scoped role would otherwise read other departments'
changes through it.

Also the chain's verification (``chain_verify``, used by ``manage.py verify_audit`` and the
chain page) and the streamed export of a range of events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet

from apps.accounts.constants import Role
from apps.accounts.permissions import scope_of

from .chain import canonical_record, record_hash
from .constants import (
    APPEND_ONLY_TABLES,
    CHAIN_CHUNK_SIZE,
    GENESIS_HASH,
    HASHED_FIELDS,
    RECENT_VERIFICATIONS,
    BreakKind,
)
from .models import AuditEvent, AuditVerification


def can_read_audit_log(user: Any) -> bool:
    scope = scope_of(user)
    return scope.is_admin or Role.AUDITOR in scope.org_wide_roles


def audit_event_list(
    *, user: Any, action: str = "", actor: str = "", target_type: str = "", target: str = ""
) -> QuerySet[AuditEvent]:
    """Events newest first, filtered: ``action`` exactly, or every action under a prefix ending
    in a dot (``registry.``); ``actor`` and ``target`` as case-insensitive substrings."""
    if not can_read_audit_log(user):
        return AuditEvent.objects.none()
    events = AuditEvent.objects.all()
    if action.endswith("."):
        events = events.filter(action__startswith=action)
    elif action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_name__icontains=actor)
    if target_type:
        events = events.filter(target_type=target_type)
    if target:
        events = events.filter(Q(target_repr__icontains=target) | Q(target_id=target))
    return events.order_by("-id")


def audit_filter_choices(*, user: Any) -> tuple[list[str], list[str]]:
    """The actions and target types that occur in the log, for the filter selects."""
    if not can_read_audit_log(user):
        return [], []
    actions = AuditEvent.objects.values_list("action", flat=True).distinct().order_by("action")
    types = (
        AuditEvent.objects.values_list("target_type", flat=True).distinct().order_by("target_type")
    )
    return list(actions), list(types)


# --- the chain ------------------------------------------------------------------------------

_CHAIN_FIELDS = (*HASHED_FIELDS, "prev_hash", "hash")


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link: which event, and what is wrong with it."""

    kind: str  # a BreakKind
    event_id: int | None
    seq: int
    message: str


@dataclass(frozen=True)
class ChainReport:
    """What one verification found. ``head_*`` is the chain's last event when it started."""

    checked: int
    head_seq: int
    head_id: int | None
    head_hash: str
    since_id: int | None = None
    broken: ChainBreak | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


def chain_head() -> tuple[int, int | None, str]:
    """The last event's seq, id and hash; ``(0, None, GENESIS_HASH)`` for an empty log."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "id", "hash").first()
    if head is None:
        return 0, None, GENESIS_HASH
    return int(head[0]), int(head[1]), str(head[2])


def _pages(
    events: QuerySet[AuditEvent], *, after_seq: int, last_seq: int, chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """``events`` with ``after_seq < seq <= last_seq`` in seq order, a page per query.

    Keyset pages over the unique ``seq`` index: each is a short index range scan, so millions
    of rows stream in constant memory, and no server-side cursor or long snapshot is held
    between pages (rows up to the head never change, so the pages are consistent anyway).
    """
    while after_seq < last_seq:
        page = list(
            events.filter(seq__gt=after_seq, seq__lte=last_seq)
            .order_by("seq")
            .values(*_CHAIN_FIELDS)[:chunk_size]
        )
        if not page:
            return
        yield page
        after_seq = page[-1]["seq"]


def _last_checkpoint() -> AuditVerification | None:
    return AuditVerification.objects.filter(ok=True, head_seq__isnull=False).order_by("-id").first()


def chain_verify(*, since_id: int | None = None, chunk_size: int = CHAIN_CHUNK_SIZE) -> ChainReport:
    """Recompute the chain from its first event (or from event ``since_id``) to its head.

    Each event, in seq order, must (1) follow the one before without a gap in seq, (2) carry
    that event's hash as its prev_hash (the first: the genesis value) and (3) hash to its own
    ``hash``. The first event failing one of these is reported and the walk stops. Then the last
    successful verification is a checkpoint: the event it ended on must still be there with the
    hash it had, which catches a cut-off tail or a chain recomputed from some event on.
    """
    head_seq, head_id, head_hash = chain_head()
    checkpoint = _last_checkpoint()
    after_seq, expected_prev, last_id = 0, GENESIS_HASH, None
    if since_id is not None:
        first = AuditEvent.objects.filter(id__gte=since_id).order_by("seq")
        first_seq = first.values_list("seq", flat=True).first()
        if first_seq is None:
            after_seq = head_seq  # nothing from there on
        else:
            # The event before it anchors the walk (none: the genesis value); if it is not the
            # one just before, the walk reports the gap at its first step.
            previous = AuditEvent.objects.filter(seq__lt=first_seq).order_by("-seq")
            found = previous.values_list("seq", "hash", "id").first()
            if found is not None:
                after_seq, expected_prev, last_id = found

    def report(checked: int, broken: ChainBreak | None = None) -> ChainReport:
        return ChainReport(checked, head_seq, head_id, head_hash, since_id, broken)

    checked = 0
    checkpoint_hash: str | None = None
    for page in _pages(
        AuditEvent.objects.all(), after_seq=after_seq, last_seq=head_seq, chunk_size=chunk_size
    ):
        for row in page:
            seq, event_id = row["seq"], row["id"]
            if seq != after_seq + 1:
                missing = (
                    f"seq {after_seq + 1}"
                    if seq == after_seq + 2
                    else f"seq {after_seq + 1} to {seq - 1}"
                )
                where = f"after event {last_id}" if last_id else "at the start of the chain"
                return report(
                    checked,
                    ChainBreak(
                        BreakKind.GAP,
                        event_id,
                        seq,
                        f"Event {event_id} (seq {seq}): {missing} is missing {where}: "
                        "events were deleted.",
                    ),
                )
            if record_hash(canonical_record(row)) != row["hash"]:
                return report(
                    checked,
                    ChainBreak(
                        BreakKind.CONTENT,
                        event_id,
                        seq,
                        f"Event {event_id} (seq {seq}): its content no longer matches its hash: "
                        "the row was changed after it was written.",
                    ),
                )
            if row["prev_hash"] != expected_prev:
                linked = f"event {last_id}" if last_id else "the genesis value"
                return report(
                    checked,
                    ChainBreak(
                        BreakKind.LINK,
                        event_id,
                        seq,
                        f"Event {event_id} (seq {seq}): its prev_hash is not the hash of "
                        f"{linked}: that event or this one was replaced.",
                    ),
                )
            if checkpoint is not None and seq == checkpoint.head_seq:
                checkpoint_hash = row["hash"]
            after_seq, expected_prev, last_id = seq, row["hash"], event_id
            checked += 1

    if checkpoint is not None and checkpoint.head_seq is not None:
        when = f"{checkpoint.started_at:%Y-%m-%d %H:%M:%S} UTC by {checkpoint.actor_name}"
        if checkpoint.head_seq > head_seq:
            return report(
                checked,
                ChainBreak(
                    BreakKind.CHECKPOINT,
                    checkpoint.head_event_id,
                    checkpoint.head_seq,
                    f"Event {checkpoint.head_event_id} (seq {checkpoint.head_seq}) is missing: "
                    f"the verification of {when} ended there, but the chain now ends at seq "
                    f"{head_seq}: its tail was cut off.",
                ),
            )
        if checkpoint_hash is not None and checkpoint_hash != checkpoint.head_hash:
            return report(
                checked,
                ChainBreak(
                    BreakKind.CHECKPOINT,
                    checkpoint.head_event_id,
                    checkpoint.head_seq,
                    f"Event {checkpoint.head_event_id} (seq {checkpoint.head_seq}) has a "
                    f"different hash than when it was verified ({when}): the chain was "
                    "recomputed up to it.",
                ),
            )
    return report(checked)


def append_only_guards() -> dict[str, str]:
    """For each audit table, its append-only trigger's state: enabled, disabled or missing."""
    states: dict[str, str] = {}
    with connection.cursor() as cursor:
        for table in APPEND_ONLY_TABLES:
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = %s",
                    [table, f"{table}_append_only"],
                )
                row = cursor.fetchone()
                states[table] = (
                    "missing" if row is None else ("disabled" if row[0] == "D" else "enabled")
                )
            else:
                cursor.execute(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                    [table],
                )
                row = cursor.fetchone()
                states[table] = "enabled" if row and row[0] == 2 else "missing"
    return states


@dataclass(frozen=True)
class ChainStatus:
    events: int
    head_seq: int
    head_id: int | None
    head_hash: str
    last_verification: AuditVerification | None
    recent_verifications: list[AuditVerification]
    guards: dict[str, str]

    @property
    def guarded(self) -> bool:
        return all(state == "enabled" for state in self.guards.values())


def chain_status(*, user: Any) -> ChainStatus | None:
    """The chain page's figures, or None for someone who may not read the audit log."""
    if not can_read_audit_log(user):
        return None
    head_seq, head_id, head_hash = chain_head()
    recent = list(AuditVerification.objects.order_by("-id")[:RECENT_VERIFICATIONS])
    return ChainStatus(
        events=head_seq,
        head_seq=head_seq,
        head_id=head_id,
        head_hash=head_hash,
        last_verification=recent[0] if recent else None,
        recent_verifications=recent,
        guards=append_only_guards(),
    )


def verification_list(*, user: Any) -> QuerySet[AuditVerification]:
    if not can_read_audit_log(user):
        return AuditVerification.objects.none()
    return AuditVerification.objects.order_by("-id")


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRange:
    """A range of events to export: by id, by time, or both (bounds inclusive)."""

    from_id: int | None = None
    to_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    up_to_seq: int | None = None  # the head when the export started: one consistent slice

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        if self.up_to_seq is not None:
            events = events.filter(seq__lte=self.up_to_seq)
        if self.from_id is not None:
            events = events.filter(id__gte=self.from_id)
        if self.to_id is not None:
            events = events.filter(id__lte=self.to_id)
        if self.since is not None:
            events = events.filter(occurred_at__gte=self.since)
        if self.until is not None:
            events = events.filter(occurred_at__lte=self.until)
        return events


def export_count(*, user: Any, bounds: ExportRange) -> int:
    """How many events ``bounds`` holds."""
    if not can_read_audit_log(user):
        return 0
    return bounds.filter(AuditEvent.objects.all()).count()


def export_records(
    *, user: Any, bounds: ExportRange, chunk_size: int = CHAIN_CHUNK_SIZE
) -> Iterator[list[dict[str, Any]]]:
    """Pages of canonical records (with ``hash``) in chain order, for the exports."""
    if not can_read_audit_log(user):
        return
    last_seq = bounds.up_to_seq if bounds.up_to_seq is not None else chain_head()[0]
    events = bounds.filter(AuditEvent.objects.all())
    for page in _pages(events, after_seq=0, last_seq=last_seq, chunk_size=chunk_size):
        records = []
        for row in page:
            record = canonical_record(row)
            record["hash"] = row["hash"]
            records.append(record)
        yield records


def export_nth_id(*, user: Any, bounds: ExportRange, n: int) -> int | None:
    """The id of the ``n``-th event of ``bounds`` in chain order (where a part should end)."""
    if not can_read_audit_log(user):
        return None
    events = bounds.filter(AuditEvent.objects.all()).order_by("seq")
    return events.values_list("id", flat=True)[n - 1 : n].first()
