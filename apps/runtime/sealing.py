"""Sealing the decision trail into the audit chain.

Decisions are written on the hot path, a thousand a second; chaining each one to the last would
serialise every decision behind one lock. Instead a beat task seals them in blocks: the rows of a
block, in id order, are hashed as a chain (``digest = sha256(previous digest + canonical JSON of
the row)``), starting from the previous block's digest, and the block's digest is written as an
audit event — which the audit log's own hash chain then protects. Changing, removing or slipping
in a decision after its block was sealed changes the recomputed digest, and
``manage.py verify_decisions`` names the first block that no longer matches.

Only decisions older than ``SEAL_LAG`` are sealed: a decision's id is drawn before its INSERT
commits, so a younger, higher id may already be visible while a lower one is still in flight.
A decision is written by one short statement, so the lag is many times longer than any
insert takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

import orjson
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record

from .models import Decision, DecisionSeal

SEAL_LAG = timedelta(seconds=10)
SEAL_MAX_ROWS = 50_000
GENESIS = "0" * 64
SEALED_ACTION = "runtime.decisions.sealed"
# The seal job's lock, so a duplicated Celery delivery cannot seal the same rows twice.
SEAL_LOCK_KEY = 7_411_902

# What a decision says, in a fixed order; every one of these is covered by the seal.
SEALED_FIELDS = (
    "id",
    "created_at",
    "run_id",
    "agent_id",
    "environment",
    "action",
    "target",
    "tool_action",
    "disposition",
    "reasons",
    "reasoning",
    "policies",
    "budgets",
    "arguments_sha256",
    "modified",
    "on_behalf_of_name",
    "request_id",
    "idempotency_key",
    "retry_after_seconds",
    "duration_us",
)


def canonical_decision(row: dict[str, Any]) -> bytes:
    """The bytes a decision is hashed over: sorted keys, no whitespace, times in UTC ISO 8601
    with microseconds, ids as strings."""
    document = {name: row[name] for name in SEALED_FIELDS}
    document["created_at"] = row["created_at"].astimezone(UTC).isoformat()
    document["run_id"] = str(row["run_id"]) if row["run_id"] is not None else None
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def chain_digest(previous: str, rows: Iterator[dict[str, Any]]) -> tuple[str, int]:
    """The digest after chaining ``rows`` onto ``previous``, and how many rows there were."""
    digest, count = previous, 0
    for row in rows:
        digest = hashlib.sha256(digest.encode() + canonical_decision(row)).hexdigest()
        count += 1
    return digest, count


def decisions_rows(first_id: int, last_id: int) -> Iterator[dict[str, Any]]:
    return (
        Decision.objects.filter(id__gte=first_id, id__lte=last_id)
        .order_by("id")
        .values(*SEALED_FIELDS)
        .iterator(chunk_size=2000)
    )


def decisions_seal(*, now: Any = None) -> DecisionSeal | None:
    """Seal the decisions recorded since the last block (older than ``SEAL_LAG``); ``None`` when
    there is nothing new or another sealer holds the lock."""
    cutoff = (now or timezone.now()) - SEAL_LAG
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
                if not cursor.fetchone()[0]:
                    return None
        last = DecisionSeal.objects.order_by("-id").first()
        after_id = last.last_decision_id if last else 0
        candidates = list(
            Decision.objects.filter(id__gt=after_id)
            .order_by("id")
            .values_list("id", "created_at")[:SEAL_MAX_ROWS]
        )
        # The block is a prefix of the new ids: it stops at the first one still too young.
        block = []
        for decision_id, created_at in candidates:
            if created_at > cutoff:
                break
            block.append(decision_id)
        if not block:
            return None
        previous = last.digest if last else GENESIS
        digest, count = chain_digest(previous, decisions_rows(block[0], block[-1]))
        seal = DecisionSeal.objects.create(
            first_decision_id=block[0],
            last_decision_id=block[-1],
            count=count,
            prev_digest=previous,
            digest=digest,
        )
        audit_record(
            actor=Actor.system(),
            action=SEALED_ACTION,
            target_type="decision_seal",
            target_id=seal.pk,
            target_repr=f"decisions {seal.first_decision_id}-{seal.last_decision_id}",
            after=seal_claim(seal),
        )
    return seal


def seal_claim(seal: DecisionSeal) -> dict[str, Any]:
    """What the audit event of a seal records; verification compares the seal row with it."""
    return {
        "first_decision_id": seal.first_decision_id,
        "last_decision_id": seal.last_decision_id,
        "count": seal.count,
        "prev_digest": seal.prev_digest,
        "digest": seal.digest,
    }


@dataclass(frozen=True)
class SealCheck:
    ok: bool
    seals: int
    decisions: int
    last_sealed_id: int
    broken_seal: int | None = None
    problem: str = ""


def decisions_verify() -> SealCheck:
    """Recompute every block from the decision rows; the first that differs is named.

    Checks, per block: it chains from the block before it; its audit event (protected by the
    audit log's chain) records the same claim; its ids follow the previous block's; and the rows
    now in its id range hash to its digest, in the same number.
    """
    from apps.audit.models import AuditEvent

    claims = {
        int(event.target_id): event.after
        for event in AuditEvent.objects.filter(action=SEALED_ACTION).only("target_id", "after")
    }
    previous, last_id, seals, decisions = GENESIS, 0, 0, 0
    for seal in DecisionSeal.objects.order_by("id").iterator(chunk_size=500):
        problem, count = _seal_problem(seal, previous, last_id, claims.get(seal.pk))
        if problem:
            where = f"seal {seal.pk} (decisions {seal.first_decision_id}-{seal.last_decision_id})"
            return SealCheck(False, seals, decisions, last_id, seal.pk, f"{where}: {problem}")
        previous, last_id = seal.digest, seal.last_decision_id
        seals += 1
        decisions += count
    return SealCheck(True, seals, decisions, last_id)


def _seal_problem(
    seal: DecisionSeal, previous: str, last_id: int, claim: dict[str, Any] | None
) -> tuple[str, int]:
    """What is wrong with one block (empty when nothing), and how many decisions it holds."""
    if seal.prev_digest != previous:
        return "does not chain from the seal before it", 0
    if claim != seal_claim(seal):
        return "differs from what its audit event recorded", 0
    if seal.first_decision_id <= last_id:
        return "overlaps the seal before it", 0
    digest, count = chain_digest(
        previous, decisions_rows(seal.first_decision_id, seal.last_decision_id)
    )
    if count != seal.count:
        return f"{seal.count} decisions were sealed, {count} are there now", count
    if digest != seal.digest:
        return "a sealed decision was changed", count
    return "", count
