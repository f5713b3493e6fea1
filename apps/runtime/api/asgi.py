"""The decision endpoint served straight from ASGI, for speed.

``POST /api/v1/runtime/decisions/`` is asked before every step of every agent. Through
Django's ASGI handler each request would pay for a thread made for it, the middleware chain,
URL resolution and DRF's dispatch: more than the decision itself. This adapter answers it
with the same rules in less: the token check, the strict JSON parser, ``decision_answer``
(the function the DRF view calls too) and the API's one error shape, run in a hot-path thread.

What the middleware would add and matters here is done here too: HTTPS is required when
``SECURE_SSL_REDIRECT`` is on (uvicorn takes the scheme from the proxy's ``X-Forwarded-Proto``
when the proxy is trusted, ``FORWARDED_ALLOW_IPS``), the Host header is checked against
``ALLOWED_HOSTS``, the request gets an id (``X-Request-ID``), answers are not cached or
sniffed. Under WSGI and in Django's test client the DRF view serves the path instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from apps.common.errors import api_exception_handler, error_body
from apps.common.hotpath import run_hot
from apps.common.middleware import request_id_from
from apps.common.parsers import parse_json
from apps.common.request_context import set_request_id

from ..authentication import RUN_TOKEN_PREFIX
from ..services import Unauthenticated, run_authenticate
from .views import decision_answer

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = tuple[int, dict[str, Any]]

PATH = "/api/v1/runtime/decisions/"


class DecisionEndpoint:
    """An ASGI app for ``POST`` to :data:`PATH`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_from(headers.get("x-request-id", ""))
        if scope["method"] != "POST":
            answer: Answer = (405, error_body("method_not_allowed", "Use POST."))
            return await _send(send, answer, request_id, extra=[(b"allow", b"POST")])
        problem = _refused(headers, scope.get("scheme", "http"))
        if problem:
            return await _send(send, problem, request_id)
        body = await _read_body(receive)
        if body is None:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            answer = (
                413,
                error_body("payload_too_large", f"The request body is larger than {limit} bytes."),
            )
            return await _send(send, answer, request_id)
        answer = await run_hot(_answer, headers, body, request_id)
        await _send(send, answer, request_id)


def _refused(headers: dict[str, str], scheme: str) -> Answer | None:
    """What Django's middleware and DRF would refuse before the view: plain HTTP where HTTPS
    is required, a bad host, a body that is not JSON."""
    if settings.SECURE_SSL_REDIRECT and scheme != "https":
        # Django would redirect; an agent's POST cannot follow that, so it is told instead.
        return 403, error_body("https_required", "Send decisions over HTTPS.")
    domain, _port = split_domain_port(headers.get("host", ""))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return 400, error_body("bad_request", "The Host header is not one this server answers.")
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        message = f'Unsupported media type "{media_type}" in request: send application/json.'
        return 415, error_body("unsupported_media_type", message)
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body, or None when it is over ``DATA_UPLOAD_MAX_MEMORY_SIZE``."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _answer(headers: dict[str, str], body: bytes, request_id: str) -> Answer:
    """Authenticate, parse, decide: in a hot-path thread. Errors as the API says them."""
    set_request_id(request_id)
    try:
        # Not read again here: decide() records only while the run is live (decisions._write).
        run = run_authenticate(_run_token(headers.get("authorization", "")), recheck=False)
        return 200, decision_answer(run, parse_json(body), headers.get("idempotency-key"))
    except Exception as exc:
        response = api_exception_handler(exc, {})
        if response is None:  # a bug: logged with its traceback, answered like Django's 500
            logger.exception("decision endpoint failed")
            return 500, error_body("server_error", "Something went wrong; it has been logged.")
        return response.status_code, dict(response.data)


def _run_token(header: str) -> str:
    keyword, _, token = header.partition(" ")
    token = token.strip()
    if keyword != "Bearer" or not token.startswith(RUN_TOKEN_PREFIX):
        raise Unauthenticated("Send the run token: Authorization: Bearer tth_run_…")
    return token


async def _send(
    send: Send, answer: Answer, request_id: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    status, payload = answer
    content = orjson.dumps(payload)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
