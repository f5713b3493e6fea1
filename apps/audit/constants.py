"""The audit chain's fixed values. Changing any of the first three breaks every stored chain."""

from __future__ import annotations

from django.db import models

# The prev_hash of the first event: the chain starts here.
GENESIS_HASH = "0" * 64

# The key of the transaction-scoped PostgreSQL advisory lock that serialises audit writes
# (a fixed bigint: the bytes b"tetherau" read as a big-endian integer).
CHAIN_LOCK_KEY = 0x7465746865726175

# The event's fields that are hashed, besides prev_hash. Order does not matter (keys are sorted).
HASHED_FIELDS = (
    "id",
    "seq",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_name",
    "request_id",
    "action",
    "target_type",
    "target_id",
    "target_repr",
    "before",
    "after",
    "message",
)

# Events read per query while verifying or exporting (keyset pages over ``seq``).
CHAIN_CHUNK_SIZE = 2000
# At most this many events in one export; a larger range is refused with a 400.
EXPORT_MAX_EVENTS = 100_000
# Verifications listed on the chain page.
RECENT_VERIFICATIONS = 10

# The append-only triggers (migration 0003) and what the page reports about them.
APPEND_ONLY_TABLES = ("audit_auditevent", "audit_auditverification")

# OCSF, for the SIEM export.
OCSF_VERSION = "1.3.0"
OCSF_PRODUCT_NAME = "Tether"
OCSF_VENDOR_NAME = "Tether project"


class BreakKind(models.TextChoices):
    """What a verification found wrong at the first broken link."""

    CONTENT = "content", "Content hash mismatch"
    LINK = "link", "prev_hash link broken"
    GAP = "gap", "Missing event (gap in seq)"
    CHECKPOINT = "checkpoint", "Differs from an earlier verification"


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSONL (canonical, re-verifiable)"
    OCSF = "ocsf", "OCSF 1.3 (for a SIEM)"
