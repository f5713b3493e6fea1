"""The agent's side of an approval: waiting for a person's answer without holding a thread.

An agent told ``ask`` waits for the outcome of its request in one of three ways (all in
docs/approvals-agents.md): it asks again later, it long-polls ``GET /api/v1/approvals/<id>/
wait/`` (:func:`wait_for_outcome`, apps/approvals/api/views.py), or it holds the websocket
``/ws/agents/approvals/<id>/`` (apps/approvals/consumers.py). Both of the latter wait on the
event loop: on the request's channel group, where ``services._announce`` says so after every
commit, **and** on a re-read of the row every ``WAIT_RECHECK_SECONDS`` whatever the channel
layer says. A message lost on the way, a Redis that is away, or the in-memory layer of the
embedded default in another process then delays the answer by a second at most; it never
leaves the agent waiting.

The message is only a wake-up: the row is the truth, so a wake-up for "one approval of two" is
answered by reading the row and waiting on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer

from apps.common.errors import NotFound
from apps.runtime.authentication import RUN_TOKEN_PREFIX
from apps.runtime.models import Run
from apps.runtime.services import Unauthenticated, run_authenticate

from . import services
from .constants import WAIT_RECHECK_SECONDS, ApprovalStatus
from .models import ApprovalRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What a wait sends itself to end its own pending receive (see Wakeups).
WAIT_OVER = "approval.wait.over"


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in the loop's shared worker threads, its database connection closed after it
    (returned to the pool). Not thread-sensitive on purpose: under ASGI that would give each
    waiting request a thread of its own for as long as it waits."""
    return await database_sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)


# --- who is asking (in a worker thread) -------------------------------------------------------


def run_of_authorization(header: str) -> Run:
    """The running run whose token the ``Authorization: Bearer tth_run_...`` header carries.
    Raises ``Unauthenticated`` (401) for anything else, as the runtime API does."""
    keyword, _, token = (header or "").partition(" ")
    token = token.strip()
    if not header:
        raise Unauthenticated("Send the run token: Authorization: Bearer tth_run_...")
    if keyword != "Bearer" or not token.startswith(RUN_TOKEN_PREFIX):
        raise Unauthenticated("Only a run token (Bearer tth_run_...) may wait for an approval.")
    return run_authenticate(token)


def approval_of_run(*, run: Run, approval_id: Any) -> ApprovalRequest:
    """The run's own request: a run sees the requests its steps raised and no other (404)."""
    found = ApprovalRequest.objects.filter(pk=approval_id, run=run).only("pk").first()
    if found is None:
        raise NotFound("This run raised no such approval request.")
    return found


# --- what the agent is told (in a worker thread) ----------------------------------------------


def still_pending(approval_id: Any) -> bool:
    """Whether the request still waits for people. One at its deadline is expired here, so
    the agent hears "expired" on time rather than at the beat's next tick."""
    approval = (
        ApprovalRequest.objects.select_related("tool", "agent").filter(pk=approval_id).first()
    )
    if approval is None:
        return False
    services.approval_expire_if_due(approval=approval)
    return approval.status == ApprovalStatus.PENDING


def current_state(approval_id: Any) -> dict[str, Any]:
    """``services.approval_state`` of the request as it stands now (deadline applied)."""
    still_pending(approval_id)
    approval = ApprovalRequest.objects.prefetch_related("votes").get(pk=approval_id)
    return services.approval_state(approval)


# --- waiting (on the event loop) ---------------------------------------------------------------


class Wakeups:
    """Messages to one request's channel group, used as wake-ups.

    ``open()`` joins the group on a channel of its own; ``wait(seconds)`` returns when a
    message came or ``seconds`` passed; ``close()`` leaves the group. A channel layer that
    fails or does not answer within ``WAIT_RECHECK_SECONDS`` is dropped with a warning, and
    ``wait`` then only sleeps: the caller's re-read still finds the outcome.

    One ``receive`` stays pending across waits, and ``close()`` ends it with a message of its
    own rather than by cancelling it: a channels_redis receive cancelled in the middle of its
    BZPOPMIN was seen to swallow the cancellation and block for good (about one wait in a
    hundred, with 90 at once), and cancelling it drops a Redis connection besides.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self.layer: BaseChannelLayer | None = None
        self.channel = ""
        self.joined = False
        self.receiving: asyncio.Future[Any] | None = None

    async def open(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            self.channel = await asyncio.wait_for(layer.new_channel(), WAIT_RECHECK_SECONDS)
            await asyncio.wait_for(layer.group_add(self.group, self.channel), WAIT_RECHECK_SECONDS)
        except Exception:
            logger.warning(
                "approvals: channel layer unavailable; %s is re-read every %.1f s instead",
                self.group,
                WAIT_RECHECK_SECONDS,
                exc_info=True,
            )
            return
        self.layer, self.joined = layer, True

    async def wait(self, seconds: float) -> None:
        if self.layer is None:
            await asyncio.sleep(seconds)
            return
        if self.receiving is None:
            self.receiving = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.receiving}, timeout=seconds)
        if not done:
            return
        received, self.receiving = self.receiving, None
        try:
            received.result()
        except Exception:
            logger.warning("approvals: lost the channel layer while waiting", exc_info=True)
            self.layer = None

    async def close(self) -> None:
        if self.joined:
            layer = self.layer or get_channel_layer()
            assert layer is not None  # it was there to join
            try:
                await asyncio.wait_for(
                    layer.group_discard(self.group, self.channel), WAIT_RECHECK_SECONDS
                )
            except Exception:
                # The group forgets a silent member by itself (group_expiry).
                logger.warning("approvals: could not leave %s", self.group, exc_info=True)
            self.joined = False
        if self.receiving is not None:
            await self._stop_receiving(self.receiving)
            self.receiving = None

    async def _stop_receiving(self, receiving: asyncio.Future[Any]) -> None:
        try:
            if self.layer is not None:
                await asyncio.wait_for(
                    self.layer.send(self.channel, {"type": WAIT_OVER}), WAIT_RECHECK_SECONDS
                )
                await asyncio.wait({receiving}, timeout=WAIT_RECHECK_SECONDS)
        except Exception:
            logger.warning("approvals: could not end the wait on %s", self.group, exc_info=True)
        if not receiving.done():
            receiving.cancel()  # the layer is away: the last resort, not waited for


async def wait_for_outcome(approval_id: Any, *, timeout: float) -> dict[str, Any]:
    """The request's state once people decided it (or it expired, or was cancelled), or its
    pending state after ``timeout`` seconds: whichever comes first.

    The group is joined before the first read, so an answer committed in between wakes the
    wait rather than slipping past it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wakeups = Wakeups(services.approval_group(approval_id))
    await wakeups.open()
    try:
        while await in_thread(still_pending, approval_id):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await wakeups.wait(min(WAIT_RECHECK_SECONDS, remaining))
    finally:
        await wakeups.close()
    return await in_thread(current_state, approval_id)
