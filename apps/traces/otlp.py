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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

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
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        number = value.double_value
        # JSON has no NaN or infinity: such a double is kept as its string.
        return number if math.isfinite(number) else str(number)
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
        result[clean(kv.key)] = any_value(kv.value)
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
KIND_KEYS = ["gen_ai.operation.name", "openinference.span.kind", "tether.span.kind"]  # _kind

# Common spellings of the registry's environments; anything else is kept as sent.
ENVIRONMENT_ALIASES = {
    "production": "prod",
    "development": "dev",
    "develop": "dev",
    "stage": "staging",
}

# Every attribute the mapping lifts into a column: its column and its rank in that column's
# list (the lowest rank present wins). Built once, so a span's attributes are read in one pass.
_LIFTED: dict[str, tuple[str, int]] = {
    key: (column, rank)
    for column, keys in {
        "agent_id": AGENT_ID,
        "agent_name": AGENT_NAME,
        "model": MODEL,
        "provider": PROVIDER,
        "input_tokens": INPUT_TOKENS,
        "output_tokens": OUTPUT_TOKENS,
        "cached_tokens": CACHED_TOKENS,
        "reasoning_tokens": REASONING_TOKENS,
        "tool_name": TOOL_NAME,
        "arguments": ARGUMENTS,
        "result": RESULT,
        "conversation_id": CONVERSATION,
        "run_ref": RUN_ID,
        "environment": ENVIRONMENT,
        # Each kind key is a column of its own: _kind weighs them.
        **{key: [key] for key in KIND_KEYS},
    }.items()
    for rank, key in enumerate(keys)
}

_PB_STATUS = {
    PbStatus.STATUS_CODE_UNSET: SpanStatus.UNSET,
    PbStatus.STATUS_CODE_OK: SpanStatus.OK,
    PbStatus.STATUS_CODE_ERROR: SpanStatus.ERROR,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_MAX = 2**31 - 1


class SpanRecord(NamedTuple):
    """A span after mapping, before agent, run and environment are resolved against the db.

    A named tuple: made in one C call per span, and its fields are in the order of the stored
    row where they match it (apps/traces/services.py slices it). ``agent_id`` and
    ``agent_name`` are what the span sent (``gen_ai.agent.id`` / ``.name``), ``environment``
    the one it named (may be empty). ``resource`` is the dict of the span's resource, shared by
    every span of that resource: read it, never change it.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    agent_id: str
    agent_name: str
    run_ref: str
    environment: str
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
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ResourceFacts:
    """What a resource says that every one of its spans may fall back on: read once per
    resource, not once per span (:func:`resource_facts`)."""

    attributes: dict[str, Any]
    service_name: str
    agent_id: Any
    agent_name: Any
    run_ref: Any
    environment: Any


def resource_facts(resource: dict[str, Any]) -> ResourceFacts:
    return ResourceFacts(
        attributes=resource,
        service_name=_text(resource.get("service.name"), IDENT_MAX),
        agent_id=resource.get("gen_ai.agent.id"),
        agent_name=resource.get("gen_ai.agent.name"),
        run_ref=resource.get("tether.run.id"),
        environment=next((resource[k] for k in ENVIRONMENT if resource.get(k)), ""),
    )


def _split(pairs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pass over a span's attributes: (what is left as JSON, column -> lifted value).

    A lifted value is the first of its column's names (in list order) that is present and not
    empty; every name of every list is left out of the JSON, as the columns say it. Lifted
    strings lose their NUL characters (PostgreSQL text refuses them); what is left is written
    as JSON, which escapes them. This is the innermost loop of the ingest (every attribute of
    every span): the common cases first, nothing looked up twice.
    """
    leftover: dict[str, Any] = {}
    lifted: dict[str, Any] = {}
    ranks: dict[str, int] = {}  # only for columns whose value came from a name ranked below 0
    place_of = _LIFTED.get
    kv: KeyValue
    for kv in pairs:
        key = kv.key
        found: Any = kv.value.string_value  # most attributes are strings: skip the dispatch
        place = place_of(key)
        if found:
            if place is None:
                leftover[key] = found
                continue
            if "\x00" in found:
                found = clean(found)
        else:
            value = kv.value
            if value.WhichOneof("value") == "int_value":
                found = value.int_value
            else:
                found = any_value(value)
            if place is None:
                leftover[key] = found
                continue
            if found is None or found == "":
                continue
            if type(found) is str and "\x00" in found:
                found = clean(found)
        column, rank = place
        if column in lifted and rank >= ranks.get(column, 0):
            continue
        if rank:
            ranks[column] = rank
        lifted[column] = found
    return leftover, lifted


def _text(value: Any, limit: int) -> str:
    if type(value) is str:
        return value[:limit]
    if value is None:
        return ""
    return json.dumps(value, default=str)[:limit]


def truncate(value: Any, limit: int = PAYLOAD_MAX) -> str:
    """Payloads keep their head and say how much was cut, so a reader knows it is partial."""
    if value is None:
        return ""
    text = value if type(value) is str else json.dumps(value, default=str)
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(dropped=len(text) - limit)


def _tokens(value: Any) -> int | None:
    """Counts arrive as ints, doubles or strings depending on the instrumentor."""
    if value is None or isinstance(value, bool):
        return None
    if type(value) is int:
        number = value
    else:
        try:
            number = int(float(value))
        except (TypeError, ValueError, OverflowError):
            return None
    return number if 0 <= number <= _INT_MAX else None


def _hex_id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size or not any(raw):
        raise SpanRejected(f"{what} must be {size} bytes and not all zero.")
    return raw.hex()


def _time(nanos: int, what: str) -> datetime:
    if nanos <= 0:
        raise SpanRejected(f"The span has no {what}.")
    try:
        return _EPOCH + timedelta(0, 0, nanos // 1000)
    except OverflowError:
        raise SpanRejected(f"The span's {what} is out of range.") from None


def _kind(attrs: dict[str, Any], lifted: dict[str, Any], tool_name: str, model: str) -> str:
    operation = lifted.get("gen_ai.operation.name")
    openinference = lifted.get("openinference.span.kind")
    explicit = lifted.get("tether.span.kind")
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
    if type(value) is str:
        known = _ENVIRONMENTS.get(value)
        if known is not None:
            return known
    if not isinstance(value, str) or not value.strip():
        return ""
    text = value.strip().lower()
    found = ENVIRONMENT_ALIASES.get(text, text)[:ENVIRONMENT_MAX]
    if len(_ENVIRONMENTS) < 1000:  # the few names a fleet uses, not every string ever sent
        _ENVIRONMENTS[value] = found
    return found


_ENVIRONMENTS: dict[str, str] = {}


def map_span(
    span: PbSpan,
    resource: dict[str, Any] | ResourceFacts,
    scope_name: str = "",
) -> SpanRecord:
    """One OTLP span and its resource attributes to a :class:`SpanRecord`.

    Pass the resource as :class:`ResourceFacts` (``resource_facts(attributes)``) when mapping
    many spans of one resource; a plain dict is read on every call. This runs once per span of
    every export, so the common cases are written inline (a string under its limit is kept as
    it is, an int token count in range too); the helpers handle the rest.
    """
    facts = resource if isinstance(resource, ResourceFacts) else resource_facts(resource)
    raw = span.trace_id
    if len(raw) != 16 or not any(raw):
        raise SpanRejected("trace_id must be 16 bytes and not all zero.")
    trace_id = raw.hex()
    raw = span.span_id
    if len(raw) != 8 or not any(raw):
        raise SpanRejected("span_id must be 8 bytes and not all zero.")
    span_id = raw.hex()
    raw = span.parent_span_id
    if raw and (len(raw) != 8 or not any(raw)):
        raise SpanRejected("parent_span_id must be 8 bytes and not all zero.")
    parent_span_id = raw.hex()
    start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
    start = _time(start_ns, "start time")
    end = _time(end_ns, "end time")
    if end_ns < start_ns:
        raise SpanRejected("The span ends before it starts.")

    attrs, lifted = _split(span.attributes)
    get = lifted.get
    value = get("model")
    model = value[:IDENT_MAX] if type(value) is str else _text(value, IDENT_MAX)
    value = get("tool_name")
    tool_name = value[:IDENT_MAX] if type(value) is str else _text(value, IDENT_MAX)
    kind = _kind(attrs, lifted, tool_name, model)

    status_pb = span.status
    status = _PB_STATUS.get(status_pb.code, SpanStatus.UNSET)
    status_message = status_pb.message
    events = []
    if span.events:
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
    if status_message:
        status_message = clean(status_message)[:MESSAGE_MAX]
    name = span.name
    if "\x00" in name:
        name = clean(name)
    if "\x00" in scope_name:
        scope_name = clean(scope_name)

    # Span attributes win over resource attributes where both may carry a value.
    agent_id = get("agent_id") or facts.agent_id
    agent_name = get("agent_name") or facts.agent_name
    run_ref = get("run_ref") or facts.run_ref
    environment = get("environment") or facts.environment
    provider = get("provider")
    conversation = get("conversation_id")
    arguments = get("arguments")
    result = get("result")
    input_tokens = get("input_tokens")
    output_tokens = get("output_tokens")
    cached_tokens = get("cached_tokens")
    reasoning_tokens = get("reasoning_tokens")
    return SpanRecord(
        trace_id,
        span_id,
        parent_span_id,
        name[:NAME_MAX],
        kind,
        agent_id[:IDENT_MAX] if type(agent_id) is str else _text(agent_id, IDENT_MAX),
        agent_name[:IDENT_MAX] if type(agent_name) is str else _text(agent_name, IDENT_MAX),
        run_ref[:64] if type(run_ref) is str else _text(run_ref, 64),
        _ENVIRONMENTS.get(environment) or normalise_environment(environment)
        if type(environment) is str
        else normalise_environment(environment),
        facts.service_name,
        scope_name[:IDENT_MAX],
        model,
        provider[:IDENT_MAX] if type(provider) is str else _text(provider, IDENT_MAX),
        input_tokens
        if type(input_tokens) is int and 0 <= input_tokens <= _INT_MAX
        else None
        if input_tokens is None
        else _tokens(input_tokens),
        output_tokens
        if type(output_tokens) is int and 0 <= output_tokens <= _INT_MAX
        else None
        if output_tokens is None
        else _tokens(output_tokens),
        cached_tokens
        if type(cached_tokens) is int and 0 <= cached_tokens <= _INT_MAX
        else None
        if cached_tokens is None
        else _tokens(cached_tokens),
        reasoning_tokens
        if type(reasoning_tokens) is int and 0 <= reasoning_tokens <= _INT_MAX
        else None
        if reasoning_tokens is None
        else _tokens(reasoning_tokens),
        tool_name,
        arguments
        if type(arguments) is str and len(arguments) <= PAYLOAD_MAX
        else truncate(arguments),
        result if type(result) is str and len(result) <= PAYLOAD_MAX else truncate(result),
        status,
        status_message,
        start,
        end,
        end_ns - start_ns,
        conversation[:IDENT_MAX] if type(conversation) is str else _text(conversation, IDENT_MAX),
        attrs,
        facts.attributes,
        events,
    )
