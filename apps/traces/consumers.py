"""Websocket consumers of the live views: one run, one trace without a run, the fleet.

Protocol (docs/traces.md, "Websocket protocol"): the page connects to ``/ws/runs/<id>/``
(or ``/ws/traces/<trace id>/``) with the cursor it was rendered with, ``?cursor=...``; the
server sends ``update`` messages; the client sends nothing. ``/ws/runs/live/`` sends
``fleet`` messages. The session authenticates the socket (``AuthMiddlewareStack``); a user
who may not see the run gets the socket accepted and closed at once with a code the page
understands -- 4401 not signed in, 4404 not found or not theirs, 4403 no longer theirs (a
re-check while open), 4400 a malformed cursor -- because a refused handshake carries no code.

How updates are found: the consumer holds a feed (apps/traces/feeds.py) and polls it in a
worker thread every ``LIVE_TICK_SECONDS`` (one indexed query when nothing changed), and at
once when the ingest side says spans were stored (``spans.stored`` on the channel group,
apps/traces/live.py). Decisions are found by that tick, not pushed: the decision hot path
(apps/runtime/decisions.py) stays exactly as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABCMeta, abstractmethod
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.permissions import forget_scope, scope_of
from apps.runtime.models import Run

from . import feeds, live, selectors
from .constants import (
    FLEET_TICK_SECONDS,
    LIVE_INTEREST_RENEW_SECONDS,
    LIVE_RECHECK_SECONDS,
    LIVE_TICK_SECONDS,
)
from .models import Trace

logger = logging.getLogger(__name__)

BAD_CURSOR = 4400
NOT_SIGNED_IN = 4401
NO_LONGER_PERMITTED = 4403
NOT_FOUND = 4404
# After a failed poll (the database away), wait this many ticks before the next.
BACKOFF_TICKS = 4


class _LiveConsumer(AsyncJsonWebsocketConsumer, metaclass=ABCMeta):
    """Accept, then poll a feed on a tick (or when woken) and send what it answers."""

    tick = LIVE_TICK_SECONDS
    group = ""

    async def connect(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=NOT_SIGNED_IN)
            return
        self.user = user
        try:
            found = await database_sync_to_async(self.open_feed)()
        except ValueError:  # a malformed cursor: the page must be reloaded
            await self.close(code=BAD_CURSOR)
            return
        if not found:
            await self.close(code=NOT_FOUND)
            return
        if self.group:
            await self.channel_layer.group_add(self.group, self.channel_name)
        self.task = asyncio.create_task(self.loop())

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The client sends nothing the server needs; a ping is answered, the rest ignored."""
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def spans_stored(self, event: dict[str, Any]) -> None:
        self.wake.set()

    @abstractmethod
    def open_feed(self) -> bool:  # in a worker thread
        """Find what the socket follows; False when the user may not see it."""

    @abstractmethod
    def poll(self, woken: bool) -> dict[str, Any] | None:  # in a worker thread
        """The update message for what is new since the cursor, or None when nothing is."""

    @abstractmethod
    def visible(self) -> bool:  # in a worker thread
        """Whether the user may still see what the socket follows."""

    def renew(self) -> None:
        if self.group:
            live.interest_renew(self.group)

    async def loop(self) -> None:
        now = time.monotonic()
        renew_at, recheck_at = now, now + LIVE_RECHECK_SECONDS
        woken = True  # the first poll catches up with what came after the page was rendered
        while True:
            now = time.monotonic()
            try:
                if now >= renew_at:
                    await database_sync_to_async(self.renew)()
                    renew_at = now + LIVE_INTEREST_RENEW_SECONDS
                if now >= recheck_at:
                    recheck_at = now + LIVE_RECHECK_SECONDS
                    forget_scope(self.user)  # roles may have changed since the socket opened
                    if not await database_sync_to_async(self.visible)():
                        await self.close(code=NO_LONGER_PERMITTED)
                        return
                message = await database_sync_to_async(self.poll)(woken)
            except Exception:
                logger.warning("Live view: poll failed; retrying", exc_info=True)
                await asyncio.sleep(self.tick * BACKOFF_TICKS)
                woken = True
                continue
            if message is not None:
                await self.send_json(message)
                if message["type"] in ("gone", "moved"):
                    await self.close()
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.tick)
            woken = self.wake.is_set()
            self.wake.clear()

    def cursor(self) -> feeds.Cursor:
        raw = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("cursor", [""])
        return feeds.Cursor.decode(raw[0]) if raw[0] else feeds.Cursor()


class RunConsumer(_LiveConsumer):
    """``/ws/runs/<run id>/``: new spans, decisions and run events of one run."""

    def open_feed(self) -> bool:
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        run = (
            selectors.runs_for_user(user=self.user)
            .select_related("agent", "version", "on_behalf_of")
            .filter(pk=run_id)
            .first()
        )
        if run is None:
            return False
        self.run: Run = run
        self.feed = feeds.RunFeed(run=run, cursor=self.cursor())
        self.group = live.run_group(run.pk)
        return True

    def poll(self, woken: bool) -> dict[str, Any] | None:
        return self.feed.poll(wake=woken)

    def visible(self) -> bool:
        return selectors.run_visible(user=self.user, run_id=self.run.pk)


class TraceConsumer(_LiveConsumer):
    """``/ws/traces/<trace id>/``: new spans of a trace without a run."""

    def open_feed(self) -> bool:
        trace_id = self.scope["url_route"]["kwargs"]["trace_id"]
        trace = selectors.traces_for_user(user=self.user).filter(trace_id=trace_id).first()
        if trace is None:
            return False
        self.trace: Trace = trace
        self.feed = feeds.TraceFeed(trace=trace, cursor=self.cursor())
        self.group = live.trace_group(trace.trace_id)
        return True

    def poll(self, woken: bool) -> dict[str, Any] | None:
        return self.feed.poll(wake=woken)

    def visible(self) -> bool:
        return selectors.trace_visible(user=self.user, trace_id=self.trace.trace_id)


class FleetConsumer(_LiveConsumer):
    """``/ws/runs/live/``: the fleet's rows, sent whole whenever one of them changed. It polls
    (no group): one query for the active runs and two for their totals per tick."""

    tick = FLEET_TICK_SECONDS
    # It only polls: no channel layer, so no Redis receive held open for it (nor cancelled
    # when the socket closes, which channels_redis does not always survive cleanly).
    channel_layer_alias = "none: the fleet polls"

    def open_feed(self) -> bool:
        if not scope_of(self.user).has_any_role:
            return False
        self.feed_fleet = feeds.FleetFeed(user=self.user)
        return True

    def poll(self, woken: bool) -> dict[str, Any] | None:
        return self.feed_fleet.poll()

    def visible(self) -> bool:
        return scope_of(self.user).has_any_role
