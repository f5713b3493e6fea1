"""Messages to Channels groups from synchronous code (services, after a commit).

One event loop per process, in a daemon thread, sends them: the channel layer keeps its Redis
connections per loop, so they are reused (a fresh loop per call, as ``async_to_sync`` makes in
a plain thread, would connect anew every time).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from channels.layers import get_channel_layer

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="tether-broadcast", daemon=True).start()
            _loop = loop
        return _loop


async def _send(groups: list[str], message: dict[str, Any], timeout: float) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    sends = (layer.group_send(group, message) for group in groups)
    await asyncio.wait_for(asyncio.gather(*sends), timeout=timeout)


def group_send(groups: list[str], message: dict[str, Any], *, timeout: float) -> None:
    """Send ``message`` to every group, waiting at most ``timeout`` seconds. Raises on failure:
    callers decide whether that matters (it never should fail the write that caused it)."""
    if not groups:
        return
    future = asyncio.run_coroutine_threadsafe(_send(groups, message, timeout), _sender_loop())
    future.result(timeout=timeout + 0.5)
