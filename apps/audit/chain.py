"""The hash chain's format: the canonical JSON of an event and its SHA-256.

An event's ``hash`` is the hex SHA-256 of the UTF-8 canonical JSON of one object: the fields in
``HASHED_FIELDS`` plus ``prev_hash`` (the hash of the event before it, or ``GENESIS_HASH``).
Canonical JSON here is Python's ``json.dumps`` with sorted keys, no whitespace,
``ensure_ascii=False`` and no NaN/Infinity. ``occurred_at`` is written as
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.

Numbers in ``before``/``after`` are normalised first: a float with an integral value is written
as an integer (``2.0`` -> ``2``, ``1e20`` -> ``100000000000000000000``). PostgreSQL's jsonb keeps
numbers as decimals, so ``1e20`` comes back as an integer; without this a row read back would
not hash as it did when written. An exported line is already in this form, so a third party can
re-verify with any JSON library that prints the same shortest round-trip floats.

This module is pure (no database): the writer, the verifier, the export and the backfill
migration all hash through it. It is the format: change it and every stored hash breaks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .constants import HASHED_FIELDS

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(value: datetime) -> str:
    """The fixed ISO 8601 form hashed and exported: UTC, microseconds, a ``Z``."""
    if value.tzinfo is None:
        raise ValueError("audit times are aware datetimes (USE_TZ)")
    return value.astimezone(UTC).strftime(TIME_FORMAT)


def normalise_json(value: Any) -> Any:
    """``value`` with integral floats as integers (see the module docstring), keys as strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if value.is_integer():
            # Through the shortest repr, as jsonb stores it: int(1.7976931348623157e308) is a
            # different (exact binary) integer than the decimal jsonb keeps.
            return int(Decimal(repr(value)))
        return value
    if isinstance(value, dict):
        return {str(k): normalise_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise_json(v) for v in value]
    raise TypeError(f"not JSON: {type(value).__name__}")


def canonical_record(event: Any, *, prev_hash: str | None = None) -> dict[str, Any]:
    """The object that is hashed: ``event``'s hashed fields and its prev_hash.

    ``event`` is an AuditEvent (or any object with those attributes) or a dict of them, as
    ``values()`` returns. ``prev_hash`` defaults to the event's own.
    """
    values: dict[str, Any] = event if isinstance(event, dict) else vars(event)
    record: dict[str, Any] = {name: values[name] for name in HASHED_FIELDS}
    record["occurred_at"] = format_time(record["occurred_at"])
    record["before"] = normalise_json(record["before"])
    record["after"] = normalise_json(record["after"])
    record["prev_hash"] = values["prev_hash"] if prev_hash is None else prev_hash
    return record


def canonical_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: dict[str, Any]) -> str:
    """The hex SHA-256 of a canonical record (which carries its prev_hash, not its hash)."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()
