"""The mapping from GenAI semantic conventions and OpenInference to one span shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.traces.constants import PAYLOAD_MAX
from apps.traces.otlp import SpanRejected, map_span

from .conftest import START, make_span


def mapped(attributes, resource=None, **kwargs):
    return map_span(make_span(attributes=attributes, **kwargs), resource or {}, "scope")


def test_current_genai_names_map_to_columns():
    record = mapped(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.agent.id": "claims-triage",
            "gen_ai.agent.name": "Claims triage",
            "gen_ai.conversation.id": "conv-1",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30,
            "gen_ai.usage.cache_read.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 12,
            "http.status_code": 200,
        },
        {"service.name": "claims-svc", "deployment.environment.name": "production"},
    )
    assert record.kind == "llm"
    assert record.provider == "openai"
    assert record.model == "gpt-4o-2024-08-06"  # what answered, not what was asked for
    assert (record.agent_id, record.agent_name, record.service_name) == (
        "claims-triage",
        "Claims triage",
        "claims-svc",
    )
    assert record.conversation_id == "conv-1"
    assert (record.input_tokens, record.output_tokens) == (120, 30)
    assert (record.cached_tokens, record.reasoning_tokens) == (100, 12)
    assert record.environment == "prod"
    assert record.attributes == {"http.status_code": 200}
    assert record.start_time == datetime.fromtimestamp(START / 1e9, UTC)
    assert record.duration_ns == 250_000_000


def test_deprecated_genai_names_still_map():
    record = mapped(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.prompt_tokens": 55,
            "gen_ai.usage.completion_tokens": 7,
            "gen_ai.operation.name": "text_completion",
        },
        {"deployment.environment": "staging"},
    )
    assert record.kind == "llm"
    assert record.provider == "anthropic"
    assert record.model == "claude-sonnet-4"
    assert (record.input_tokens, record.output_tokens) == (55, 7)
    assert record.environment == "staging"
    assert record.attributes == {}


def test_openinference_names_map():
    record = mapped(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.token_count.prompt": 10,
            "llm.token_count.completion": 4,
            "llm.token_count.prompt_details.cache_read": 6,
            "llm.token_count.completion_details.reasoning": 2,
            "session.id": "sess-9",
            "input.value": '{"messages": []}',
            "output.value": "hello",
        }
    )
    assert record.kind == "llm"
    assert (record.model, record.provider) == ("gpt-4o-mini", "openai")
    assert (record.input_tokens, record.output_tokens) == (10, 4)
    assert (record.cached_tokens, record.reasoning_tokens) == (6, 2)
    assert record.conversation_id == "sess-9"
    assert (record.arguments, record.result) == ('{"messages": []}', "hello")


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ({"gen_ai.operation.name": "invoke_agent"}, "agent"),
        ({"gen_ai.operation.name": "invoke_workflow"}, "workflow"),
        ({"gen_ai.operation.name": "embeddings"}, "llm"),
        ({"gen_ai.operation.name": "execute_tool"}, "tool"),
        ({"openinference.span.kind": "AGENT"}, "agent"),
        ({"openinference.span.kind": "CHAIN"}, "workflow"),
        ({"openinference.span.kind": "TOOL"}, "tool"),
        ({"openinference.span.kind": "RETRIEVER"}, "retrieval"),
        ({"openinference.span.kind": "EMBEDDING"}, "llm"),
        ({"openinference.span.kind": "GUARDRAIL"}, "guardrail"),
        ({"gen_ai.operation.name": "search_memory"}, "memory"),
        ({"tool.name": "crm-lookup"}, "tool"),
        ({"http.method": "GET"}, "other"),
    ],
)
def test_kind_comes_from_the_operation_or_openinference_kind(attributes, kind):
    assert mapped(attributes).kind == kind


def test_tool_call_arguments_and_result_are_kept():
    record = mapped(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "crm-lookup",
            "gen_ai.tool.call.arguments": '{"customer_id": "c-1"}',
            "gen_ai.tool.call.result": '{"name": "Ada"}',
        }
    )
    assert record.kind == "tool"
    assert record.tool_name == "crm-lookup"
    assert record.arguments == '{"customer_id": "c-1"}'
    assert record.result == '{"name": "Ada"}'


def test_large_payloads_are_truncated_with_a_visible_marker():
    record = mapped({"gen_ai.tool.call.arguments": "x" * (PAYLOAD_MAX + 10)})
    assert record.arguments.startswith("x" * PAYLOAD_MAX)
    assert record.arguments.endswith("[truncated 10 characters]")


def test_nul_characters_cannot_break_storage():
    record = mapped({"input.value": "a\x00b"})
    assert record.arguments == "a\ufffdb"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"trace_id": b"\x01" * 3}, "trace_id"),
        ({"trace_id": b"\x00" * 16}, "trace_id"),
        ({"span_id": b""}, "span_id"),
        ({"parent_span_id": b"\x01"}, "parent_span_id"),
        ({"duration_ns": -5}, "ends before it starts"),
    ],
)
def test_spans_with_bad_ids_or_times_are_rejected(kwargs, reason):
    with pytest.raises(SpanRejected, match=reason):
        mapped({}, **kwargs)


def test_token_counts_sent_as_strings_or_doubles_are_read():
    record = mapped({"gen_ai.usage.input_tokens": "42", "gen_ai.usage.output_tokens": 3.0})
    assert (record.input_tokens, record.output_tokens) == (42, 3)
