"""OTLP decoding and the mapping from GenAI / OpenInference attributes to one span shape.

No database here: :func:`decode_request` turns a body into an ``ExportTraceServiceRequest``,
:func:`map_span` turns one span (with its resource) into a :class:`SpanRecord`, or raises
:class:`SpanRejected` with a reason the exporter is told in ``partial_success``.

Attribute names follow the OpenTelemetry GenAI semantic conventions, current and deprecated
(``gen_ai.system``, ``gen_ai.usage.prompt_tokens`` ...), and OpenInference. The first name
found in each list wins; every name in a list is removed from the leftover attributes, so what
is kept as JSON is what the columns do not already say.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from .constants import (
    ENVIRONMENT_MAX,
    IDENT_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    PAYLOAD_MAX,
    TRUNCATION_MARKER,
    SpanKind,
    SpanStatus,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class MalformedBody(Exception):
    """The body cannot be read as OTLP: the exporter gets a 400 with this message."""


class BodyTooLarge(Exception):
    """The body, after inflating, is over the configured limit: 413."""


class SpanRejected(Exception):
    """One span cannot be stored; it is counted in ``partial_success.rejected_spans``."""


# --- decoding --------------------------------------------------------------------------------


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate gzip without ever holding more than ``limit`` + 1 bytes: a 10 KB bomb that
    inflates to gigabytes is refused after ``limit`` bytes, not after the memory is gone."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedBody(f"The body is not valid gzip: {exc}.") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge
    if not inflater.eof:
        raise MalformedBody("The gzip body is truncated.")
    if inflater.unused_data:
        raise MalformedBody("The gzip body has trailing data after its end.")
    return out


_ID_KEYS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP/JSON writes ids as hex, where protobuf's JSON mapping expects base64 for bytes.

    Rewrite hex ids in place before ``json_format.Parse``; a value that is not hex of the right
    length is left alone, so it parses to bytes of the wrong length and its span is rejected.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and len(value) == 2 * _ID_KEYS[key]:
                with contextlib.suppress(ValueError):
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise MalformedBody(
                f"The body is not an OTLP ExportTraceServiceRequest: {exc}."
            ) from None
        return message
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedBody(f"The body is not JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise MalformedBody("The body must be a JSON object (an ExportTraceServiceRequest).")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise MalformedBody(f"The body is not OTLP/JSON: {exc}.") from None
    return message


# --- attribute values ------------------------------------------------------------------------


def clean(text: str) -> str:
    """PostgreSQL text and jsonb refuse NUL; one such character must not fail a whole batch."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "string_value":
        return clean(value.string_value)
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_dict(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return None


def attributes_dict(pairs: Any) -> dict[str, Any]:
    """KeyValue list to a dict; doubles that are not finite become strings (JSON has no NaN)."""
    result: dict[str, Any] = {}
    kv: KeyValue
    for kv in pairs:
        value = any_value(kv.value)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        result[clean(kv.key)] = value
    return result


# --- mapping ---------------------------------------------------------------------------------

OPERATION_KINDS = {
    "invoke_agent": SpanKind.AGENT,
    "create_agent": SpanKind.AGENT,
    "invoke_workflow": SpanKind.WORKFLOW,
    "chat": SpanKind.LLM,
    "text_completion": SpanKind.LLM,
    "generate_content": SpanKind.LLM,
    "embeddings": SpanKind.LLM,
    "execute_tool": SpanKind.TOOL,
    "retrieval": SpanKind.RETRIEVAL,
    "retrieve": SpanKind.RETRIEVAL,
    "search_memory": SpanKind.MEMORY,
    "create_memory": SpanKind.MEMORY,
    "update_memory": SpanKind.MEMORY,
    "delete_memory": SpanKind.MEMORY,
    "apply_guardrail": SpanKind.GUARDRAIL,
}

OPENINFERENCE_KINDS = {
    "AGENT": SpanKind.AGENT,
    "CHAIN": SpanKind.WORKFLOW,
    "LLM": SpanKind.LLM,
    "EMBEDDING": SpanKind.LLM,
    "TOOL": SpanKind.TOOL,
    "RETRIEVER": SpanKind.RETRIEVAL,
    "RERANKER": SpanKind.RETRIEVAL,
    "GUARDRAIL": SpanKind.GUARDRAIL,
    "EVALUATOR": SpanKind.OTHER,
}

AGENT_ID = ["gen_ai.agent.id"]
AGENT_NAME = ["gen_ai.agent.name", "agent.name"]
MODEL = ["gen_ai.response.model", "gen_ai.request.model", "llm.model_name"]
PROVIDER = ["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"]
INPUT_TOKENS = [
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
]
OUTPUT_TOKENS = [
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
]
CACHED_TOKENS = [
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
]
REASONING_TOKENS = [
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
]
TOOL_NAME = ["gen_ai.tool.name", "tool.name"]
ARGUMENTS = ["gen_ai.tool.call.arguments", "input.value"]
RESULT = ["gen_ai.tool.call.result", "output.value"]
CONVERSATION = ["gen_ai.conversation.id", "session.id"]
RUN_ID = ["tether.run.id"]
ENVIRONMENT = ["deployment.environment.name", "deployment.environment"]
KIND_KEYS = ["gen_ai.operation.name", "openinference.span.kind", "tether.span.kind"]

# Common spellings of the registry's environments; anything else is kept as sent.
ENVIRONMENT_ALIASES = {
    "production": "prod",
    "development": "dev",
    "develop": "dev",
    "stage": "staging",
}

_PB_STATUS = {
    PbStatus.STATUS_CODE_UNSET: SpanStatus.UNSET,
    PbStatus.STATUS_CODE_OK: SpanStatus.OK,
    PbStatus.STATUS_CODE_ERROR: SpanStatus.ERROR,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_MAX = 2**31 - 1


@dataclass
class SpanRecord:
    """A span after mapping, before agent, run and environment are resolved against the db."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    agent_id: str
    agent_name: str
    service_name: str
    scope_name: str
    model: str
    provider: str
    input_tokens: int | None
    output_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None
    tool_name: str
    arguments: str
    result: str
    status: str
    status_message: str
    start_time: datetime
    end_time: datetime
    duration_ns: int
    conversation_id: str
    run_ref: str
    environment: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


def _take(attrs: dict[str, Any], keys: list[str]) -> Any:
    """The first of ``keys`` present (and not empty), removing every one of them."""
    found = None
    for key in keys:
        value = attrs.pop(key, None)
        if found is None and value not in (None, ""):
            found = value
    return found


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:limit]


def truncate(value: Any, limit: int = PAYLOAD_MAX) -> str:
    """Payloads keep their head and say how much was cut, so a reader knows it is partial."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(dropped=len(text) - limit)


def _tokens(value: Any) -> int | None:
    """Counts arrive as ints, doubles or strings depending on the instrumentor."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 <= number <= _INT_MAX else None


def _hex_id(raw: bytes, size: int, what: str, *, required: bool = True) -> str:
    if not raw and not required:
        return ""
    if len(raw) != size or not any(raw):
        raise SpanRejected(f"{what} must be {size} bytes and not all zero.")
    return raw.hex()


def _time(nanos: int, what: str) -> datetime:
    if nanos <= 0:
        raise SpanRejected(f"The span has no {what}.")
    try:
        return _EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise SpanRejected(f"The span's {what} is out of range.") from None


def _kind(attrs: dict[str, Any], tool_name: str, model: str) -> str:
    operation, openinference, explicit = (attrs.pop(key, None) for key in KIND_KEYS)
    if isinstance(explicit, str) and explicit in SpanKind.values:
        return explicit
    if isinstance(operation, str) and operation.lower() in OPERATION_KINDS:
        return OPERATION_KINDS[operation.lower()]
    if isinstance(openinference, str) and openinference.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[openinference.upper()]
    if tool_name:
        return SpanKind.TOOL
    if model:
        return SpanKind.LLM
    # Keep an unknown operation visible rather than losing it with the kind.
    if operation:
        attrs["gen_ai.operation.name"] = operation
    if openinference:
        attrs["openinference.span.kind"] = openinference
    return SpanKind.OTHER


def normalise_environment(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return ""
    text = value.strip().lower()
    return ENVIRONMENT_ALIASES.get(text, text)[:ENVIRONMENT_MAX]


def map_span(span: PbSpan, resource: dict[str, Any], scope_name: str = "") -> SpanRecord:
    """One OTLP span and its resource attributes to a :class:`SpanRecord`."""
    trace_id = _hex_id(span.trace_id, 16, "trace_id")
    span_id = _hex_id(span.span_id, 8, "span_id")
    parent_span_id = _hex_id(span.parent_span_id, 8, "parent_span_id", required=False)
    start = _time(span.start_time_unix_nano, "start time")
    end = _time(span.end_time_unix_nano, "end time")
    if span.end_time_unix_nano < span.start_time_unix_nano:
        raise SpanRejected("The span ends before it starts.")

    attrs = attributes_dict(span.attributes)
    resource = dict(resource)
    service_name = _text(resource.get("service.name"), IDENT_MAX)
    # Span attributes win over resource attributes where both may carry a value.
    agent_id = _text(_take(attrs, AGENT_ID) or resource.get("gen_ai.agent.id"), IDENT_MAX)
    agent_name = _text(_take(attrs, AGENT_NAME) or resource.get("gen_ai.agent.name"), IDENT_MAX)
    model = _text(_take(attrs, MODEL), IDENT_MAX)
    provider = _text(_take(attrs, PROVIDER), IDENT_MAX)
    tool_name = _text(_take(attrs, TOOL_NAME), IDENT_MAX)
    kind = _kind(attrs, tool_name, model)
    run_ref = _text(_take(attrs, RUN_ID) or resource.get("tether.run.id"), 64)
    environment = normalise_environment(
        _take(attrs, ENVIRONMENT) or next((resource[k] for k in ENVIRONMENT if resource.get(k)), "")
    )

    status = _PB_STATUS.get(span.status.code, SpanStatus.UNSET)
    status_message = clean(span.status.message)
    events = []
    for event in span.events:
        event_attrs = attributes_dict(event.attributes)
        events.append(
            {
                "name": clean(event.name),
                "time_unix_nano": event.time_unix_nano,
                "attributes": event_attrs,
            }
        )
        if status == SpanStatus.ERROR and not status_message and event.name == "exception":
            status_message = str(event_attrs.get("exception.message", ""))
    if status == SpanStatus.ERROR and not status_message:
        status_message = str(attrs.get("error.type", ""))

    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent_span_id,
        name=clean(span.name)[:NAME_MAX],
        kind=kind,
        agent_id=agent_id,
        agent_name=agent_name,
        service_name=service_name,
        scope_name=clean(scope_name)[:IDENT_MAX],
        model=model,
        provider=provider,
        input_tokens=_tokens(_take(attrs, INPUT_TOKENS)),
        output_tokens=_tokens(_take(attrs, OUTPUT_TOKENS)),
        cached_tokens=_tokens(_take(attrs, CACHED_TOKENS)),
        reasoning_tokens=_tokens(_take(attrs, REASONING_TOKENS)),
        tool_name=tool_name,
        arguments=truncate(_take(attrs, ARGUMENTS)),
        result=truncate(_take(attrs, RESULT)),
        status=status,
        status_message=status_message[:MESSAGE_MAX],
        start_time=start,
        end_time=end,
        duration_ns=span.end_time_unix_nano - span.start_time_unix_nano,
        conversation_id=_text(_take(attrs, CONVERSATION), IDENT_MAX),
        run_ref=run_ref,
        environment=environment,
        attributes=attrs,
        resource=resource,
        events=events,
    )
