"""The agents' websocket: ``/ws/agents/approvals/<id>/``, the state of one request as it moves.

Protocol (docs/approvals-agents.md): the agent connects with its run token in the handshake's
``Authorization: Bearer tth_run_...`` header (or ``?token=`` where its client cannot set
headers) and an ``Origin`` of Tether's own host (the origin validator in front of every socket
refuses a handshake without one). The server sends ``{"type": "approval", ...}`` (the fields of
``services.approval_state``) at once and whenever it changes, and closes the socket (1000)
after a decided state. The client sends nothing; a ``{"type": "ping"}`` gets a ``pong``.

As the traces' consumers do, a refusal is an accepted socket closed at once with a code the
client can read: 4401 no valid run token, 4404 no such request of this run. Changes are found
as the long-poll finds them (apps/approvals/waiting.py): woken by the request's channel group,
and by a re-read every ``WAIT_RECHECK_SECONDS`` whatever the channel layer says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.common.asgi import handshake_authorization
from apps.common.errors import NotFound
from apps.runtime.services import Unauthenticated

from . import waiting
from .constants import WAIT_RECHECK_SECONDS
from .services import approval_group

logger = logging.getLogger(__name__)

NOT_AUTHENTICATED = 4401
NOT_FOUND = 4404


class AgentApprovalConsumer(AsyncJsonWebsocketConsumer):
    """One agent following one of its run's approval requests until it is decided."""

    async def connect(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.group = ""
        self.wake = asyncio.Event()
        await self.accept()
        try:
            run = await waiting.in_thread(
                waiting.run_of_authorization, handshake_authorization(self.scope)
            )
        except Unauthenticated:
            await self.close(code=NOT_AUTHENTICATED)
            return
        approval_id = self.scope["url_route"]["kwargs"]["approval_id"]
        try:
            approval = await waiting.in_thread(
                waiting.approval_of_run, run=run, approval_id=approval_id
            )
        except NotFound:
            await self.close(code=NOT_FOUND)
            return
        self.approval_id = approval.pk
        group = approval_group(approval.pk)
        try:
            await asyncio.wait_for(
                self.channel_layer.group_add(group, self.channel_name), WAIT_RECHECK_SECONDS
            )
            self.group = group
        except Exception:
            logger.warning("approvals: channel layer unavailable; re-reading only", exc_info=True)
        self.task = asyncio.create_task(self.follow())

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
        if self.group:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.channel_layer.group_discard(self.group, self.channel_name),
                    WAIT_RECHECK_SECONDS,
                )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def approval_changed(self, event: dict[str, Any]) -> None:
        """``services._announce``: something about the request changed; read it again."""
        self.wake.set()

    async def follow(self) -> None:
        sent: dict[str, Any] | None = None
        while True:
            state: dict[str, Any] | None
            try:
                state = await waiting.in_thread(waiting.current_state, self.approval_id)
            except Exception:
                logger.warning(
                    "approvals: could not read %s; retrying", self.approval_id, exc_info=True
                )
                state = sent
            if state is not None and state != sent:
                await self.send_json({"type": "approval", **state})
                sent = state
            if state is not None and state["decided"]:
                await self.close()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=WAIT_RECHECK_SECONDS)
            self.wake.clear()
