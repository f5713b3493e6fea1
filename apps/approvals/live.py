"""The inbox's live updates: ``/ws/approvals/inbox/``.

Every change to a request (created, answered, expired, escalated, cancelled) is sent, after
its commit, to the group ``INBOX_GROUP`` (services._announce). Each open inbox or request page
holds a socket in that group; the consumer passes on ``{"type": "changed", "approval": id,
"event": ...}`` only for requests its user may read, and the page fetches its own fragment
again (through the selectors, so what it shows is always what this user may see). The message
says nothing else: a request's content never travels over the broadcast.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.accounts.permissions import forget_scope, scope_of

from . import selectors
from .constants import INBOX_GROUP

INBOX_SOCKET_PATH = "/ws/approvals/inbox/"
NOT_SIGNED_IN = 4401
NO_ROLE = 4403


class InboxConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.user = self.scope.get("user")
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=NOT_SIGNED_IN)
            return
        if not await database_sync_to_async(lambda: scope_of(self.user).has_any_role)():
            await self.close(code=NO_ROLE)
            return
        await self.channel_layer.group_add(INBOX_GROUP, self.channel_name)
        self.joined = True

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(INBOX_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def approval_changed(self, event: dict[str, Any]) -> None:
        if await database_sync_to_async(self._may_read)(event["approval"]):
            await self.send_json(
                {"type": "changed", "approval": event["approval"], "event": event.get("event", "")}
            )

    def _may_read(self, approval_id: str) -> bool:
        forget_scope(self.user)  # roles may have changed since the socket opened
        return selectors.approvals_for_user(user=self.user).filter(pk=approval_id).exists()
