"""Live views, the ingest side: tell open run and trace pages that spans were stored.

After an export's transaction commits, one ``group_send`` per touched run (group
``live.run.<run id hex>``) and per touched trace whose spans name no run
(``live.trace.<trace id>``) -- per export, never per span -- and only to groups somebody is
watching. A watching consumer keeps an *interest key* for its group in the cache
(``tether:live:<group>``, renewed while the page is open); the ingest side reads the keys of
all the groups it touched in one ``get_many`` and sends to those that are set. With nobody
watching, an export costs one cache round trip.

The message only wakes the page's consumer, which then reads what is new from the database
(apps/traces/feeds.py). So a lost or skipped message delays an update until the consumer's next
tick, it never loses one; and a failure here is logged and swallowed: it must never fail an
ingest. After a failure the ingest side stays quiet for ``LIVE_QUIET_SECONDS`` so an outage
of the channel layer does not add a timeout to every export.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import transaction

from apps.common import broadcast

from .constants import LIVE_INTEREST_TTL_SECONDS, LIVE_QUIET_SECONDS, LIVE_SEND_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

# The message a consumer receives: its handler is ``spans_stored`` (Channels maps the dot).
SPANS_STORED = "spans.stored"

# The websocket routes (controlplane/routing.py) as the pages connect to them.
FLEET_SOCKET_PATH = "/ws/runs/live/"


def run_socket_path(run_id: uuid.UUID | str) -> str:
    return f"/ws/runs/{run_id}/"


def trace_socket_path(trace_id: str) -> str:
    return f"/ws/traces/{trace_id}/"


_quiet_until = 0.0


def run_group(run_id: uuid.UUID | str) -> str:
    return f"live.run.{uuid.UUID(str(run_id)).hex}"


def trace_group(trace_id: str) -> str:
    return f"live.trace.{trace_id}"


def interest_key(group: str) -> str:
    return f"tether:{group}"


def interest_renew(group: str) -> None:
    """A consumer watching ``group`` says so (sync; consumers call it in a thread)."""
    cache.set(interest_key(group), 1, timeout=LIVE_INTEREST_TTL_SECONDS)


def touched_groups(spans: Iterable[Any]) -> list[str]:
    """The groups of one export's spans: each run, and each trace whose spans name no run."""
    runs: set[Any] = set()
    traces: set[str] = set()
    for span in spans:
        if span.run_id is not None:
            runs.add(span.run_id)
        else:
            traces.add(span.trace_id)
    return sorted(run_group(r) for r in runs) + sorted(trace_group(t) for t in traces)


def spans_stored_on_commit(spans: Iterable[Any]) -> None:
    """Call inside the export's transaction: once it commits, the watchers are told."""
    groups = touched_groups(spans)
    if groups:
        transaction.on_commit(partial(notify, groups), robust=True)


def notify(groups: list[str]) -> int:
    """Wake the consumers watching these groups; how many groups were sent to. Never raises."""
    global _quiet_until
    if time.monotonic() < _quiet_until:
        return 0
    try:
        keys = {interest_key(group): group for group in groups}
        watched = [keys[key] for key in cache.get_many(list(keys))]
        if watched:
            broadcast.group_send(watched, {"type": SPANS_STORED}, timeout=LIVE_SEND_TIMEOUT_SECONDS)
        return len(watched)
    except Exception:
        _quiet_until = time.monotonic() + LIVE_QUIET_SECONDS
        logger.warning("Live views: could not notify %d group(s)", len(groups), exc_info=True)
        return 0


def forget_quiet() -> None:
    """Tests: end a quiet period a failure started."""
    global _quiet_until
    _quiet_until = 0.0
