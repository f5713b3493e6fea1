"""The agents' control socket: ``/ws/agents/runs/<run_id>/control/``, where a kill reaches a
running agent at once, not at its next step.

Protocol (docs/killswitch-agents.md): the agent connects with its run token in the
handshake's ``Authorization: Bearer tth_run_...`` header (or ``?token=``), and no Origin is
needed. The server sends ``{"type": "state", "state": "running"}`` once it listens for the
run's kill; then, when a switch kills the run, ``{"type": "killed", "kill_switch", "scope",
"target", "reason", "engaged_by", "automatic", "engaged_at"}`` and closes 1000; when the run
ends any other way, ``{"type": "state", "state": <state>}`` and closes 1000. ``{"type":
"ping"}`` gets a ``pong``; nothing else the client sends means anything.

A refusal is an accepted socket closed at once with a code the client can read, as on the
approvals socket: 4401 no valid run token, 4404 the token is not this run's. The token of a
run a switch already killed is refused by the runtime (401), yet its agent must still learn
of the kill: it is sent the ``killed`` message, then the socket closes 4410.

The kill arrives as the approvals' answers do: on the run's channel group (control.py) and,
whatever the channel layer says, by a read of the run every ``CONTROL_RECHECK_SECONDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.approvals import waiting
from apps.common.asgi import handshake_authorization
from apps.runtime.constants import RunState
from apps.runtime.services import RunKilledToken, Unauthenticated

from . import control

logger = logging.getLogger(__name__)

NOT_AUTHENTICATED = 4401
NOT_FOUND = 4404
KILLED = 4410


def _is_final(status: dict[str, Any]) -> bool:
    return status["type"] == "killed" or status["state"] != RunState.RUNNING


class AgentControlConsumer(AsyncJsonWebsocketConsumer):
    """One agent's run listening for the kill switch until the run ends."""

    async def connect(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.group = ""
        self.wake = asyncio.Event()
        self.pushed: dict[str, Any] | None = None
        await self.accept()
        run_id = self.scope["url_route"]["kwargs"]["run_id"]
        try:
            run = await waiting.in_thread(
                waiting.run_of_authorization, handshake_authorization(self.scope)
            )
        except RunKilledToken as refused:
            await self._already_killed(refused, run_id)
            return
        except Unauthenticated:
            await self.close(code=NOT_AUTHENTICATED)
            return
        if run.pk != run_id:
            await self.close(code=NOT_FOUND)
            return
        self.run_id = run.pk
        group = control.control_group(run.pk)
        try:
            await asyncio.wait_for(
                self.channel_layer.group_add(group, self.channel_name),
                control.CONTROL_RECHECK_SECONDS,
            )
            self.group = group
        except Exception:
            logger.warning("killswitch: channel layer unavailable; re-reading only", exc_info=True)
        # Only now: "running" promises that a kill from here on reaches this socket.
        await self.send_json({"type": "state", "state": RunState.RUNNING})
        self.task = asyncio.create_task(self.follow())

    async def _already_killed(self, refused: RunKilledToken, run_id: Any) -> None:
        """A killed run's token: say which kill, then close 4410 (the close code alone says
        "killed" should the message not be read)."""
        if refused.run_id != run_id:
            await self.close(code=NOT_FOUND)
            return
        try:
            status = await waiting.in_thread(control.run_status, run_id)
        except Exception:
            logger.warning("killswitch: could not read the kill of %s", run_id, exc_info=True)
            status = None
        if status is not None and status["type"] == "killed":
            await self.send_json(status)
        await self.close(code=KILLED)

    async def disconnect(self, code: int) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task})
        if self.group:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.channel_layer.group_discard(self.group, self.channel_name),
                    control.CONTROL_RECHECK_SECONDS,
                )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def run_killed(self, event: dict[str, Any]) -> None:
        """``control.push_killed``: a switch killed this run. Sent by ``follow``, so the agent
        hears of the end once, whichever way it was found."""
        self.pushed = {**event, "type": "killed"}
        self.wake.set()

    async def follow(self) -> None:
        while True:
            status = self.pushed
            if status is None:
                try:
                    status = await waiting.in_thread(control.run_status, self.run_id)
                except Exception:
                    logger.warning(
                        "killswitch: could not read run %s; retrying", self.run_id, exc_info=True
                    )
                status = self.pushed or status  # a push that came during the read says more
            if status is not None and _is_final(status):
                await self.send_json(status)
                await self.close()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=control.CONTROL_RECHECK_SECONDS)
            self.wake.clear()
