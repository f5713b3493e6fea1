"""Helpers for the chain tests: write events, tamper as a superuser, verify like a third party."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from django.db import connection

from apps.audit.constants import GENESIS_HASH
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record


def record(n: int = 1, *, action: str = "test.thing.updated", **extra: Any) -> list[AuditEvent]:
    """``n`` events from Tether itself, targets ``thing-0``, ``thing-1``, ..."""
    return [
        audit_record(
            actor=Actor.system("tests"),
            action=action,
            target_type="thing",
            target_id=i,
            target_repr=f"thing-{i}",
            **extra,
        )
        for i in range(n)
    ]


def as_superuser_bypassing_the_trigger(sql: str, params: Iterable[Any] = ()) -> None:
    """What an attacker with the database superuser's password can do: switch the session to
    replica mode, where ordinary triggers do not fire, and change rows. (The test runs in a
    transaction, which rolls the switch back with everything else.)"""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, list(params))
        cursor.execute("SET LOCAL session_replication_role = origin")


def third_party_verify(lines: list[bytes], *, first_prev: str = GENESIS_HASH) -> int:
    """Re-verify exported JSONL with nothing but the standard library, as docs/audit.md says.

    Returns the number of lines; fails on the first bad one.
    """
    prev = first_prev
    for number, line in enumerate(lines, 1):
        event = json.loads(line)
        claimed = event.pop("hash")
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == claimed, f"line {number}"
        assert event["prev_hash"] == prev, f"line {number}: link"
        prev = claimed
    return len(lines)
