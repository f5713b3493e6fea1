"""``POST /v1/traces``, the OTLP/HTTP trace receiver; and the admins' trace ingest page.

Answers as the OTLP specification says: the response has the request's content type
(protobuf or JSON); success is an ``ExportTraceServiceResponse`` (with ``partial_success``
when spans were refused); errors carry a ``google.rpc.Status``. 429 with ``Retry-After`` when
this process already works on ``OTLP_MAX_IN_FLIGHT`` exports (apps/traces/admission.py), 503
with ``Retry-After`` when the database is unavailable or no connection is free in time: stock
exporters retry both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.common.views import never_stored
from apps.registry.forms import apply_service_error
from apps.runtime.models import AgentCredential
from apps.runtime.services import Unauthenticated, credential_authenticate

from . import admission, selectors, services
from .constants import INGEST_KEY_KIND
from .forms import IngestKeyForm
from .models import IngestKey
from .otlp import JSON, PROTOBUF, BodyTooLarge, MalformedBody, decode_request, gunzip_bounded
from .services import spans_ingest

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.RESOURCE_EXHAUSTED,
    503: code_pb2.UNAVAILABLE,
}


@dataclass(frozen=True)
class OtlpRequest:
    """What the receiver reads of a request, whichever server carries it: Django's view here,
    or the ASGI endpoint (apps/traces/receiver.py). ``read_body(limit)`` returns the body as
    sent (at most ``limit`` bytes) or raises :class:`BodyTooLarge`."""

    method: str
    media_type: str
    encoding: str
    authorization: str
    read_body: Callable[[int], bytes]


@dataclass(frozen=True)
class OtlpAnswer:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _message(
    body_type: str, message: ExportTraceServiceResponse | status_pb2.Status, *, status: int = 200
) -> OtlpAnswer:
    if body_type == PROTOBUF:
        return OtlpAnswer(status, PROTOBUF, message.SerializeToString())
    return OtlpAnswer(status, JSON, json_format.MessageToJson(message, indent=None).encode())


def otlp_error(body_type: str, status: int, message: str) -> OtlpAnswer:
    answer = _message(
        body_type,
        status_pb2.Status(code=_GRPC_CODES.get(status, 0), message=message),
        status=status,
    )
    if status == 503:
        answer.headers["Retry-After"] = RETRY_AFTER_SECONDS
    if status == 429:
        answer.headers["Retry-After"] = str(settings.OTLP_RETRY_AFTER_SECONDS)
    if status == 401:
        answer.headers["WWW-Authenticate"] = 'Bearer realm="tether"'
    return answer


def body_type_of(media_type: str) -> str:
    """The content type of the answer: the request's, or JSON when that is not OTLP's."""
    return media_type if media_type in (PROTOBUF, JSON) else JSON


def _authenticate(authorization: str) -> AgentCredential | IngestKey:
    """The agent credential or ingest key in ``Authorization: Bearer``, told apart by prefix."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "Send an agent credential or an ingest key: "
            "Authorization: Bearer tth_agent_... or tth_ingest_..."
        )
    if token.startswith(f"tth_{INGEST_KEY_KIND}_"):
        return services.ingest_key_authenticate(token)
    return credential_authenticate(token)


def otlp_receive(request: OtlpRequest, *, admitted: bool = False) -> OtlpAnswer:
    """The receiver: check, authenticate, decode, store, answer.

    Back-pressure first: beyond ``OTLP_MAX_IN_FLIGHT`` exports in progress in this process
    the answer is 429 with Retry-After, before any work. ``admitted`` says the caller holds a
    slot already (the ASGI endpoint takes it before handing the export to a thread).
    """
    body_type = body_type_of(request.media_type)
    if request.method != "POST":
        answer = otlp_error(body_type, 405, "POST an ExportTraceServiceRequest.")
        answer.headers["Allow"] = "POST"
        return answer
    if admitted:
        return _receive(request, body_type)
    with admission.exports.slot() as free:
        if not free:
            return otlp_error(
                body_type, 429, "Too many exports in progress; retry after the Retry-After delay."
            )
        return _receive(request, body_type)


def _receive(request: OtlpRequest, body_type: str) -> OtlpAnswer:
    try:
        sender = _authenticate(request.authorization)
    except Unauthenticated as exc:
        return otlp_error(body_type, 401, exc.message)
    except (OperationalError, InterfaceError):
        logger.warning("OTLP receiver: database unavailable while authenticating", exc_info=True)
        return otlp_error(body_type, 503, "The trace store is unavailable; retry later.")
    media_type = request.media_type
    if media_type not in (PROTOBUF, JSON):
        return otlp_error(
            JSON, 415, f"Send {PROTOBUF} or {JSON}, not {media_type or 'no content type'}."
        )
    encoding = request.encoding.strip().lower() or "identity"
    if encoding not in ("identity", "gzip"):
        return otlp_error(
            body_type, 415, f"Content-Encoding {encoding!r} is not supported; use gzip."
        )
    limit = settings.OTLP_MAX_BODY_BYTES
    try:
        data = request.read_body(limit)
        if encoding == "gzip":
            data = gunzip_bounded(data, limit)
        export = decode_request(data, media_type)
    except BodyTooLarge:
        return otlp_error(body_type, 413, f"The body is over {limit} bytes (after decompression).")
    except MalformedBody as exc:
        return otlp_error(body_type, 400, str(exc))
    try:
        if isinstance(sender, IngestKey):
            result = spans_ingest(ingest_key=sender, request=export)
        else:
            result = spans_ingest(credential=sender, request=export)
    except (OperationalError, InterfaceError):
        # Also a connection pool that lent no connection within DB_POOL_TIMEOUT.
        logger.warning("OTLP receiver: database unavailable while storing", exc_info=True)
        return otlp_error(body_type, 503, "The trace store is unavailable; retry later.")
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = result.error_message
    return _message(body_type, response)


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """At most ``limit`` bytes off the wire (the receiver inflates gzip, bounded too)."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    data = request.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge
    return data


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    """``POST /v1/traces`` through Django (the test client, WSGI; under ASGI the endpoint in
    apps/traces/receiver.py serves the path, with the same :func:`otlp_receive`)."""
    answer = otlp_receive(
        OtlpRequest(
            method=request.method or "",
            media_type=(request.content_type or "").split(";")[0].strip().lower(),
            encoding=request.headers.get("Content-Encoding", "identity"),
            authorization=request.headers.get("Authorization", ""),
            read_body=lambda limit: _read_body(request, limit),
        )
    )
    response = HttpResponse(answer.body, content_type=answer.content_type, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


# --- the trace ingest page (admins) ----------------------------------------------------------

INGEST_REFUSED = "Trace ingest is managed by admins. Ask an admin for an ingest key."


def _ingest_page(
    request: HttpRequest, form: IngestKeyForm, *, issued: str = "", status: int = 200
) -> HttpResponse:
    user = current_user(request)
    context = {
        "section": "traces",
        "form": form,
        "keys": list(selectors.ingest_key_list(user=user)),
        "unregistered": list(selectors.unregistered_agents(user=user)),
        "issued": issued,
    }
    response = render(request, "traces/ingest.html", context, status=status)
    if issued:
        never_stored(response)  # the plaintext is on this response only
    return response


@role_required
@require_http_methods(["GET", "POST"])
def ingest(request: HttpRequest) -> HttpResponse:
    """Ingest keys (issuing one shows its secret once, here) and the unregistered agents."""
    if not scope_of(request.user).is_admin:
        return render(request, "error.html", {"status": 403, "message": INGEST_REFUSED}, status=403)
    if request.method != "POST":
        return _ingest_page(request, IngestKeyForm())
    form = IngestKeyForm(request.POST)
    if form.is_valid():
        try:
            _key, issued = services.ingest_key_issue(
                actor=current_user(request),
                name=form.cleaned_data["name"],
                environment=form.cleaned_data["environment"],
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            return _ingest_page(request, IngestKeyForm(), issued=issued.plaintext, status=201)
    return _ingest_page(request, form, status=400)


@login_required  # anyone but an admin: the selector answers 404
@require_POST
def ingest_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = selectors.ingest_key_get(user=request.user, key_id=key_id)
    try:
        services.ingest_key_revoke(actor=current_user(request), key=key)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Revoked the ingest key “{key.name}”. Exports sent with it now get 401."
        )
    return redirect("traces:ingest")
