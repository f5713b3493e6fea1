"""The console's pages and the JSON timeline: status codes, scoping, fragments, and query
counts that do not grow with the data."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.traces.feeds import Cursor
from apps.traces.models import Span

from ..clients import api_client, console_client
from .runs import a_run_with_a_trace, decide, make_runner, post, span, start_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runner(org):
    return make_runner(org.owner, org.claims, "claims-triage")


@pytest.fixture
def run(runner):
    run = start_run(runner, "Triage claim 42")
    a_run_with_a_trace(runner, run)
    decide(run, at=run.started_at + timedelta(milliseconds=990))
    decide(run, "deny", at=run.started_at + timedelta(milliseconds=1500))
    return run


def test_the_runs_list_shows_what_the_user_may_see(org, run) -> None:
    page = console_client(org.approver).get("/runs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Triage claim 42" in html and "1 denied" in html and "1 err" in html
    assert reverse("traces:run-detail", args=[run.pk]) in html
    assert "Triage claim 42" not in console_client(org.other_owner).get("/runs/").content.decode()


def test_the_lists_are_for_people_with_a_role(org, run) -> None:
    for url in ("/runs/", "/traces/", "/runs/live/"):
        assert console_client(org.outsider).get(url).status_code == 403  # the no-role page
        assert console_client(org.owner).get(url).status_code == 200


def test_an_htmx_filter_answers_the_table_alone(org, run) -> None:
    client = console_client(org.owner)
    fragment = client.get("/runs/?state=finished", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and "No run matches these filters" in body
    assert "Triage claim 42" in client.get("/runs/?state=running").content.decode()


def test_an_invalid_filter_is_ignored_and_said_so(org, run) -> None:
    page = console_client(org.owner).get("/runs/?cost_min=lots&state=nope")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Ignored an invalid filter" in body and "Triage claim 42" in body


def test_the_runs_list_takes_the_same_queries_for_five_runs_or_sixty(
    org, runner, django_assert_max_num_queries
) -> None:
    client = console_client(org.owner)

    def make(n: int) -> None:
        for i in range(n):
            r = start_run(runner, f"Run {i}")
            decide(r, "deny" if i % 2 else "allow")
            if i % 5 == 0:
                a_run_with_a_trace(runner, r)

    make(5)
    # 12, and 2 for the navigation's count of approvals waiting for this admin.
    with django_assert_max_num_queries(14) as few:
        assert client.get("/runs/?has_denials=on").status_code == 200
    make(55)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/runs/?has_denials=on").status_code == 200


def test_the_run_page_shows_the_waterfall_and_an_outsider_gets_404(org, run) -> None:
    url = reverse("traces:run-detail", args=[run.pk])
    page = console_client(org.owner).get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="wf-row ') == 10
    assert "wf-row--decision wf-kind--deny wf-row--error" in html
    assert f'data-socket="/ws/runs/{run.pk}/"' in html
    assert console_client(org.outsider).get(url).status_code == 404
    assert console_client(org.other_owner).get(url).status_code == 404
    missing = reverse("traces:run-detail", args=["00000000-0000-0000-0000-000000000000"])
    assert console_client(org.owner).get(missing).status_code == 404


def test_the_run_page_takes_the_same_queries_for_a_small_and_a_large_run(
    org, runner, django_assert_max_num_queries
) -> None:
    client = console_client(org.owner)
    small, large = start_run(runner), start_run(runner)
    a_run_with_a_trace(runner, small)
    for _ in range(10):
        a_run_with_a_trace(runner, large)
        decide(large)
    with django_assert_max_num_queries(20) as counted:
        client.get(reverse("traces:run-detail", args=[small.pk]))
    with django_assert_max_num_queries(len(counted.captured_queries)):
        assert client.get(reverse("traces:run-detail", args=[large.pk])).status_code == 200


def test_a_step_opens_as_a_fragment_for_htmx_and_as_a_page_otherwise(org, run) -> None:
    client = console_client(org.owner)
    tool = Span.objects.get(tool_name="crm-lookup")  # its trace is the run's; no run id on it
    url = reverse("traces:run-step", args=[run.pk, f"span-{tool.pk}"])
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment
    assert (
        "timeout after 300 ms" in fragment
        and "{&quot;customer_id&quot;: &quot;c-1&quot;}" in fragment
    )
    page = client.get(url)
    assert page.status_code == 200 and "Back to the timeline" in page.content.decode()
    assert console_client(org.other_owner).get(url).status_code == 404
    assert client.get(reverse("traces:run-step", args=[run.pk, "span-0"])).status_code == 404


def test_a_cut_payload_is_marked_truncated(org, runner) -> None:
    run = start_run(runner)
    post(
        runner,
        span("execute_tool export", start=run.started_at, trace_id=os.urandom(16),
             gen_ai__operation__name="execute_tool", gen_ai__tool__name="export",
             gen_ai__tool__call__result="x" * 20_000, tether__run__id=str(run.pk)),
    )  # fmt: skip
    tool = run.spans.get()
    html = (
        console_client(org.owner)
        .get(reverse("traces:run-step", args=[run.pk, f"span-{tool.pk}"]), HTTP_HX_REQUEST="true")
        .content.decode()
    )
    assert "Truncated" in html and "3,616 more characters were not kept" in html


def test_the_polling_fallback_answers_what_is_new_since_the_cursor(org, run) -> None:
    client = console_client(org.owner)
    url = reverse("traces:run-updates", args=[run.pk])
    first = client.get(url, {"cursor": Cursor().encode()}).json()
    assert first["type"] == "update"
    ids = {step["id"] for step in first["steps"]}
    assert sum(i.startswith("span-") for i in ids) == 4 and "outcome" in ids
    assert 'id="run-summary"' in first["summary"]
    assert client.get(url, {"cursor": "garbage"}).status_code == 400
    assert console_client(org.other_owner).get(url, {"cursor": first["cursor"]}).status_code == 404


def test_a_trace_without_a_run_has_its_own_page_and_one_with_a_run_redirects(
    org, runner, run
) -> None:
    trace_id = os.urandom(16)
    post(runner, span("invoke_agent digest", start=timezone.now(), trace_id=trace_id))
    client = console_client(org.owner)
    page = client.get(reverse("traces:trace-detail", args=[trace_id.hex()]))
    assert page.status_code == 200 and "invoke_agent digest" in page.content.decode()
    linked = run.traces.get()
    redirect = client.get(reverse("traces:trace-detail", args=[linked.trace_id]))
    assert redirect.status_code == 302
    assert redirect["Location"] == reverse("traces:run-detail", args=[run.pk])
    assert (
        console_client(org.other_owner)
        .get(reverse("traces:trace-detail", args=[trace_id.hex()]))
        .status_code
        == 404
    )
    assert client.get("/traces/ingest/").status_code == 403  # still the admins' page


def test_the_json_timeline_lists_every_step_with_its_payloads(org, run) -> None:
    response = api_client(org.owner).get(f"/api/v1/runs/{run.pk}/timeline/")
    assert response.status_code == 200
    data = response.json()
    assert data["run"]["id"] == str(run.pk) and data["run"]["agent"] == "claims-triage"
    assert data["run"]["url"].endswith(f"/api/v1/runs/{run.pk}/timeline/")
    assert data["totals"] == {
        "spans": 4, "errors": 1, "decisions": 2, "denials": 1,
        # gpt-4o at the catalogue's $2.50 in / $10 out per million tokens
        "input_tokens": 1200, "output_tokens": 80, "cost_usd": "0.003800",
    }  # fmt: skip
    assert [s["number"] for s in data["steps"]] == list(range(1, 11))
    tool = next(s for s in data["steps"] if s["phase"] == "Tool call")
    assert tool["error"] and tool["span"]["arguments"] == '{"customer_id": "c-1"}'
    assert tool["span"]["status_message"] == "timeout after 300 ms"
    denial = next(s for s in data["steps"] if s["kind"] == "deny")
    assert denial["decision"]["reasons"] == ["policy_denied"]
    assert denial["decision"]["url"].endswith(
        reverse("runtime:decision-detail", args=[denial["decision"]["id"]])
    )
    assert data["steps"][-1]["type"] == "outcome" and data["truncated"] is False


def test_the_json_timeline_is_404_for_someone_outside_the_scope(org, run) -> None:
    for user in (org.outsider, org.other_owner):
        response = api_client(user).get(f"/api/v1/runs/{run.pk}/timeline/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_the_fleet_lists_running_runs_and_those_that_just_ended(org, runner) -> None:
    running = start_run(runner, "Still going")
    ended = start_run(runner, "Just ended", state="finished")
    old = start_run(
        runner, "Long over", started_at=timezone.now() - timedelta(days=1), state="finished"
    )
    html = console_client(org.approver).get("/runs/live/").content.decode()
    assert "Still going" in html and "Just ended" in html and "Long over" not in html
    assert html.index(str(running.pk)) < html.index(str(ended.pk))  # running first
    assert old.pk  # listed nowhere on the fleet page
    fragment = (
        console_client(org.approver).get("/runs/live/", HTTP_HX_REQUEST="true").content.decode()
    )
    assert fragment.lstrip().startswith('<tbody id="fleet-rows"')
