"""The two export formats, one event per line (JSON Lines), built from canonical records.

``jsonl``: the canonical record itself (the hashed fields, ``prev_hash``) plus ``hash``, in the
canonical form, so that a third party can re-verify every line and every link (docs/audit.md).

``ocsf``: an OCSF 1.3 *API Activity* event (class 6003, category 6 Application Activity) per
audit event, for a SIEM. What OCSF has no attribute for -- before/after and the chain fields --
goes into ``unmapped``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import metadata
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.utils import timezone

from apps.common.errors import ApplicationError

from . import selectors
from .chain import TIME_FORMAT, canonical_bytes
from .constants import (
    EXPORT_MAX_EVENTS,
    OCSF_PRODUCT_NAME,
    OCSF_VENDOR_NAME,
    OCSF_VERSION,
    ExportFormat,
)
from .models import ActorType
from .selectors import ExportRange

CONTENT_TYPE = "application/x-ndjson; charset=utf-8"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OCSF_CATEGORY_UID = 6  # Application Activity
OCSF_CLASS_UID = 6003  # API Activity

# activity_id by the last word of the action (``registry.agent.created`` -> created).
OCSF_ACTIVITIES: dict[str, tuple[int, str]] = {
    **dict.fromkeys(
        ("created", "issued", "granted", "assigned", "added", "started"), (1, "Create")
    ),
    **dict.fromkeys(
        ("updated", "changed", "promoted", "ended", "expired", "opened", "engaged", "released"),
        (3, "Update"),
    ),
    **dict.fromkeys(("deleted", "revoked", "removed"), (4, "Delete")),
}
OCSF_OTHER = (99, "Other")

# OCSF user.type_id: 1 User, 3 System, 99 Other (an agent: "Service" only exists from 1.6).
OCSF_USER_TYPES: dict[str, tuple[int, str]] = {
    ActorType.USER: (1, "User"),
    ActorType.SYSTEM: (3, "System"),
    ActorType.AGENT: (99, "Agent"),
}


@cache
def _product_version() -> str:
    try:
        return metadata.version("tether")
    except metadata.PackageNotFoundError:
        return ""


def ocsf_activity(action: str) -> tuple[int, str]:
    return OCSF_ACTIVITIES.get(action.rsplit(".", 1)[-1], OCSF_OTHER)


def ocsf_event(record: dict[str, Any]) -> dict[str, Any]:
    """One canonical record (with ``hash``) as an OCSF API Activity event."""
    activity_id, activity_name = ocsf_activity(record["action"])
    occurred = datetime.strptime(record["occurred_at"], TIME_FORMAT).replace(tzinfo=UTC)
    user_type_id, user_type = OCSF_USER_TYPES.get(record["actor_type"], (0, "Unknown"))
    user: dict[str, Any] = {
        "name": record["actor_name"],
        "type_id": user_type_id,
        "type": user_type,
    }
    if record["actor_id"]:
        user["uid"] = record["actor_id"]
    api: dict[str, Any] = {"operation": record["action"], "service": {"name": OCSF_PRODUCT_NAME}}
    metadata_: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {
            "name": OCSF_PRODUCT_NAME,
            "vendor_name": OCSF_VENDOR_NAME,
            "version": _product_version(),
        },
        "uid": str(record["id"]),
        "sequence": record["seq"],
        "log_name": "audit",
        "original_time": record["occurred_at"],
    }
    if record["request_id"]:
        api["request"] = {"uid": record["request_id"]}
        metadata_["correlation_uid"] = record["request_id"]
    message = record["message"] or (
        f"{record['actor_name']} {record['action']} {record['target_repr']}"
    )
    return {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": OCSF_CATEGORY_UID,
        "category_name": "Application Activity",
        "class_uid": OCSF_CLASS_UID,
        "class_name": "API Activity",
        "type_uid": OCSF_CLASS_UID * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,
        "status": "Success",
        "time": _epoch_ms(occurred),
        "message": message,
        "metadata": metadata_,
        "actor": {"user": user},
        "api": api,
        # Required by the class; Tether does not record the client's address.
        "src_endpoint": {"name": "unknown"},
        "resources": [
            {
                "type": record["target_type"],
                "uid": record["target_id"],
                "name": record["target_repr"],
            }
        ],
        "unmapped": {
            "actor_type": record["actor_type"],
            "before": record["before"],
            "after": record["after"],
            "seq": record["seq"],
            "prev_hash": record["prev_hash"],
            "hash": record["hash"],
        },
    }


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, exactly (no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def jsonl_lines(pages: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    """One canonical record per line (its bytes are what a verifier re-hashes, plus ``hash``)."""
    for records in pages:
        yield b"".join(canonical_bytes(record) + b"\n" for record in records)


def ocsf_lines(pages: Iterable[list[dict[str, Any]]]) -> Iterator[bytes]:
    for records in pages:
        yield b"".join(
            json.dumps(ocsf_event(r), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            for r in records
        )


def _async_chunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` pulled one at a time in the request's thread (its database connection).

    Under ASGI a StreamingHttpResponse given a sync iterator reads it all into memory first;
    this keeps the export streamed there too, a page of events per step.
    """

    def pull() -> bytes | None:
        return next(chunks, None)

    async def stream() -> AsyncIterator[bytes]:
        while (chunk := await sync_to_async(pull, thread_sensitive=True)()) is not None:
            yield chunk

    return stream()


def export_response(
    request: HttpRequest, *, user: Any, bounds: ExportRange, export_format: str
) -> StreamingHttpResponse:
    """The events in ``bounds`` streamed as JSON Lines; ApplicationError if there are too many.

    The chain's head when this is called bounds the export, so the count sent in a header is
    the number of lines, however long the stream takes.
    """
    bounds = dataclasses.replace(bounds, up_to_seq=selectors.chain_head()[0])
    count = selectors.export_count(user=user, bounds=bounds)
    if count > EXPORT_MAX_EVENTS:
        last_id = selectors.export_nth_id(user=user, bounds=bounds, n=EXPORT_MAX_EVENTS)
        raise ApplicationError(
            f"This range holds {count:,} events; one export holds at most "
            f"{EXPORT_MAX_EVENTS:,}. Narrow it, or export it in parts "
            f"(the first part ends at to_id={last_id}).",
            code="range_too_large",
            details={"count": count, "max": EXPORT_MAX_EVENTS},
        )
    pages = selectors.export_records(user=user, bounds=bounds)
    lines = ocsf_lines(pages) if export_format == ExportFormat.OCSF else jsonl_lines(pages)
    underlying = getattr(request, "_request", request)  # a DRF Request wraps the HttpRequest
    content = _async_chunks(lines) if isinstance(underlying, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPE)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    suffix = "-ocsf" if export_format == ExportFormat.OCSF else ""
    response["Content-Disposition"] = f'attachment; filename="tether-audit-{stamp}{suffix}.jsonl"'
    response["X-Audit-Event-Count"] = str(count)
    response["Cache-Control"] = "no-store"
    return response
