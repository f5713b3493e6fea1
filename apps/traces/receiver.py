"""``POST /v1/traces`` served straight from ASGI, for speed (as the decision endpoint is).

Through Django's ASGI handler every export paid, before a span was mapped, for a thread made
for it, a database connection lent by the pool and given back, a Redis connection for the live
views' cache, the middleware chain: about 10 ms of CPU per export, a fifth of the cost of a
512-span batch. Here an export is answered by :func:`~apps.traces.views.otlp_receive`, the
function the Django view calls too, in one of ``OTLP_MAX_IN_FLIGHT`` long-lived ingest threads
that keep their database connection (and their cache client) between exports.

Back-pressure happens before any of that: when every slot is taken (apps/traces/admission.py)
the export is answered 429 with ``Retry-After`` at once, never queued. What the middleware
would add and matters here is done here too: the Host header is checked against
``ALLOWED_HOSTS``, plain HTTP is refused where ``SECURE_SSL_REDIRECT`` requires HTTPS (an
exporter cannot follow a redirect with its POST), the request gets an id (``X-Request-ID``).
Under WSGI and in Django's test client the Django view serves the path instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from apps.common.hotpath import Threads
from apps.common.middleware import request_id_from
from apps.common.request_context import set_request_id

from . import admission
from .otlp import BodyTooLarge
from .views import OtlpAnswer, OtlpRequest, body_type_of, otlp_error, otlp_receive

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/v1/traces"


def _threads() -> int:
    limit = settings.OTLP_MAX_IN_FLIGHT
    return limit if limit > 0 else 8


INGEST = Threads("tether-otlp", _threads)


def _unit(request_id: str, request: OtlpRequest) -> OtlpAnswer:
    """One export in an ingest thread, in that thread's own context (see ``Threads.run``)."""
    set_request_id(request_id)
    try:
        return otlp_receive(request, admitted=True)
    except Exception:
        logger.exception("OTLP receiver failed")
        return otlp_error(body_type_of(request.media_type), 500, "Something went wrong; logged.")
    finally:
        admission.exports.release()


class TracesEndpoint:
    """An ASGI app for :data:`PATH`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_from(headers.get("x-request-id", ""))
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        body_type = body_type_of(media_type)
        problem = _refused(headers, scope.get("scheme", "http"), body_type)
        if problem is not None:
            return await _send(send, problem, request_id)
        method = scope["method"]
        if method == "POST" and not admission.exports.try_acquire():
            busy = otlp_error(
                body_type, 429, "Too many exports in progress; retry after the Retry-After delay."
            )
            return await _send(send, busy, request_id)
        try:
            body = await _read_body(receive, settings.OTLP_MAX_BODY_BYTES)
        except BaseException:
            if method == "POST":
                admission.exports.release()
            raise

        def read_body(limit: int) -> bytes:
            if body is None:
                raise BodyTooLarge
            return body

        request = OtlpRequest(
            method=method,
            media_type=media_type,
            encoding=headers.get("content-encoding", "identity"),
            authorization=headers.get("authorization", ""),
            read_body=read_body,
        )
        if method != "POST":  # answered without a slot or a thread
            return await _send(send, otlp_receive(request), request_id)
        # The slot taken above is given back by _unit, in the thread, when the export is done.
        answer = await INGEST.run(_unit, request_id, request, own_context=True)
        await _send(send, answer, request_id)


def _refused(headers: dict[str, str], scheme: str, body_type: str) -> OtlpAnswer | None:
    if settings.SECURE_SSL_REDIRECT and scheme != "https":
        return otlp_error(body_type, 403, "Send traces over HTTPS.")
    domain, _port = split_domain_port(headers.get("host", ""))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return otlp_error(body_type, 400, "The Host header is not one this server answers.")
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it is over ``limit`` bytes (the rest is not kept)."""
    chunks: list[bytes] = []
    size = 0
    over = False
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            over = True
            chunks.clear()
        elif not over:
            chunks.append(chunk)
        if not message.get("more_body"):
            return None if over else b"".join(chunks)


async def _send(send: Send, answer: OtlpAnswer, request_id: str) -> None:
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
        *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def shut_down() -> None:
    """Close every ingest thread's connection and stop the threads (tests, shutdown)."""
    INGEST.shut_down()
