"""``POST /v1/traces``: the OTLP/HTTP trace receiver.

Answers as the OTLP specification says: the response has the request's content type
(protobuf or JSON); success is an ``ExportTraceServiceResponse`` (with ``partial_success``
when spans were refused); errors carry a ``google.rpc.Status``. 503 with ``Retry-After`` when
the database is unavailable, which stock exporters retry.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apps.runtime.models import AgentCredential
from apps.runtime.services import Unauthenticated, credential_authenticate

from .otlp import JSON, PROTOBUF, BodyTooLarge, MalformedBody, decode_request, gunzip_bounded
from .services import spans_ingest

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
_GRPC_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    405: code_pb2.UNIMPLEMENTED,
    413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def _media_type(request: HttpRequest) -> str:
    return (request.content_type or "").split(";")[0].strip().lower()


def _answer(
    body_type: str, message: ExportTraceServiceResponse | status_pb2.Status, *, status: int = 200
) -> HttpResponse:
    if body_type == PROTOBUF:
        return HttpResponse(message.SerializeToString(), content_type=PROTOBUF, status=status)
    return HttpResponse(
        json_format.MessageToJson(message, indent=None), content_type=JSON, status=status
    )


def _error(body_type: str, status: int, message: str) -> HttpResponse:
    response = _answer(
        body_type,
        status_pb2.Status(code=_GRPC_CODES.get(status, 0), message=message),
        status=status,
    )
    if status == 503:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="tether"'
    return response


def _authenticate(request: HttpRequest) -> AgentCredential:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send an agent credential: Authorization: Bearer tth_agent_...")
    return credential_authenticate(token.strip())


def _read_body(request: HttpRequest, limit: int) -> bytes:
    """At most ``limit`` bytes off the wire, then at most ``limit`` after inflating."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    data = request.read(limit + 1)
    if len(data) > limit:
        raise BodyTooLarge
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "gzip":
        return gunzip_bounded(data, limit)
    return data


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    media_type = _media_type(request)
    body_type = media_type if media_type in (PROTOBUF, JSON) else JSON
    if request.method != "POST":
        response = _error(body_type, 405, "POST an ExportTraceServiceRequest.")
        response["Allow"] = "POST"
        return response
    try:
        credential = _authenticate(request)
    except Unauthenticated as exc:
        return _error(body_type, 401, exc.message)
    except (OperationalError, InterfaceError):
        logger.warning("OTLP receiver: database unavailable while authenticating", exc_info=True)
        return _error(body_type, 503, "The trace store is unavailable; retry later.")
    if media_type not in (PROTOBUF, JSON):
        return _error(
            JSON, 415, f"Send {PROTOBUF} or {JSON}, not {media_type or 'no content type'}."
        )
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        return _error(body_type, 415, f"Content-Encoding {encoding!r} is not supported; use gzip.")
    limit = settings.OTLP_MAX_BODY_BYTES
    try:
        export = decode_request(_read_body(request, limit), media_type)
    except BodyTooLarge:
        return _error(body_type, 413, f"The body is over {limit} bytes (after decompression).")
    except MalformedBody as exc:
        return _error(body_type, 400, str(exc))
    try:
        result = spans_ingest(credential=credential, request=export)
    except (OperationalError, InterfaceError):
        logger.warning("OTLP receiver: database unavailable while storing", exc_info=True)
        return _error(body_type, 503, "The trace store is unavailable; retry later.")
    response = ExportTraceServiceResponse()
    if result.rejected:
        response.partial_success.rejected_spans = result.rejected
        response.partial_success.error_message = result.error_message
    return _answer(body_type, response)
