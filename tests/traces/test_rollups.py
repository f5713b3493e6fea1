"""Trace rollups: every export of a trace adds to one ``Trace`` row, whatever the order."""

from __future__ import annotations

import os

import pytest

from apps.runtime import services as runtime
from apps.traces.models import Trace

from .conftest import export, make_span

pytestmark = pytest.mark.django_db
URL = "/v1/traces"


def post(client, sender, *spans):
    body = export(*spans).SerializeToString()
    response = client.post(URL, data=body, content_type="application/x-protobuf", **sender.auth)
    assert response.status_code == 200


def test_spans_of_one_trace_over_several_exports_add_up_in_one_trace_row(client, sender):
    trace_id, root_id = os.urandom(16), os.urandom(8)
    child = make_span(
        "chat gpt-4o",
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20},
        trace_id=trace_id,
        parent_span_id=root_id,
        duration_ns=2_000_000_000,
    )
    post(client, sender, child)  # the child arrives first: no root yet
    trace = Trace.objects.get(trace_id=trace_id.hex())
    assert (trace.name, trace.has_root, trace.span_count) == ("chat gpt-4o", False, 1)

    root = make_span("invoke_agent claims", trace_id=trace_id, span_id=root_id)
    failed_tool = make_span(
        "execute_tool lookup",
        {"gen_ai.usage.input_tokens": 5},
        trace_id=trace_id,
        parent_span_id=root_id,
    )
    failed_tool.status.code = failed_tool.status.STATUS_CODE_ERROR
    post(client, sender, root, failed_tool)

    trace.refresh_from_db()
    assert trace.name == "invoke_agent claims" and trace.has_root
    assert (trace.span_count, trace.error_count) == (3, 1)
    assert (trace.input_tokens, trace.output_tokens) == (105, 20)
    assert trace.agent == sender.agent
    assert (trace.ended_at - trace.started_at).total_seconds() == 2.0


def test_a_trace_is_linked_to_the_run_any_of_its_spans_names(client, sender):
    run, _ = runtime.run_start(credential=sender.credential, task="Triage claim 7")
    trace_id = os.urandom(16)
    post(client, sender, make_span("unlinked", trace_id=trace_id))
    post(client, sender, make_span("linked", {"tether.run.id": str(run.pk)}, trace_id=trace_id))
    assert Trace.objects.get(trace_id=trace_id.hex()).run == run
    assert list(run.traces.values_list("span_count", flat=True)) == [2]


def test_one_export_touching_many_traces_writes_one_row_each(client, sender):
    post(client, sender, *[make_span(f"step {i}") for i in range(450)])
    assert Trace.objects.count() == 450
    assert set(Trace.objects.values_list("span_count", flat=True)) == {1}
