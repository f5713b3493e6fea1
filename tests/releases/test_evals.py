"""Evaluation suites: writing them, and judging a version on its recorded runs or through a
real eval hook (an HTTP server on 127.0.0.1 in a thread)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.approvals.notify import signature
from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry import services as registry
from apps.registry.models import Agent, AgentVersion
from apps.registry.snapshots import version_behaviour
from apps.releases import evals
from apps.releases.evals import case_add, suite_create, suite_delete, suite_evaluate
from apps.releases.models import EvalCase, EvalRun, EvalSuite
from apps.runtime import services as runtime
from apps.runtime.constants import Action, Disposition, RunState
from apps.runtime.models import Decision, Run

SECRET = "s3cret-for-the-eval-hook"

# --- helpers, also used by test_gate.py ----------------------------------------------------------


def make_agent(org: Any, slug: str = "claims-triage") -> Agent:
    """An active agent of org.owner, registered through the service (so it has v1)."""
    return registry.agent_create(
        actor=org.owner,
        data={
            "name": slug.replace("-", " ").title(),
            "slug": slug,
            "mission": "Triage.",
            "department": org.claims,
            "environments": ["dev", "prod"],
            "status": "active",
            "instructions": "Triage the claim.",
        },
    )


def new_version(org: Any, agent: Agent, instructions: str) -> AgentVersion:
    registry.agent_update(actor=org.owner, agent=agent, data={"instructions": instructions})
    return agent.versions.order_by("-number").first()


def record_run(
    agent: Agent,
    version: AgentVersion,
    task: str,
    *,
    state: str = RunState.FINISHED,
    outcome: str = "triaged",
    tools: dict[str, str] | None = None,
    ended_ago: timedelta = timedelta(0),
    environment: str = "prod",
) -> Run:
    """A run of ``version`` that ended ``ended_ago`` (running when state is running), with a
    tool.invoke decision per ``tools`` entry (tool slug: disposition)."""
    now = timezone.now()
    run = Run.objects.create(
        agent=agent,
        version=version,
        environment=environment,
        task=task,
        state=state,
        outcome=outcome,
        token_lookup=uuid.uuid4().hex[:16],
        token_digest="0" * 64,
        token_expires_at=now + timedelta(minutes=15),
        ended_at=None if state == RunState.RUNNING else now - ended_ago,
    )
    for tool, disposition in (tools or {}).items():
        decide(run, tool, disposition)
    return run


def decide(run: Run, tool: str, disposition: str) -> Decision:
    return Decision.objects.create(
        created_at=timezone.now(),
        run=run,
        agent=run.agent,
        environment=run.environment,
        action=Action.TOOL_INVOKE,
        target=tool,
        tool_action="read",
        disposition=disposition,
        reasoning="test",
    )


def recorded_suite(org: Any, agent: Agent, *cases: dict[str, Any], **extra: Any) -> EvalSuite:
    suite = suite_create(
        actor=org.owner, agent=agent, data={"name": "Triage basics", "mode": "recorded", **extra}
    )
    for n, case in enumerate(cases, 1):
        case_add(actor=org.owner, suite=suite, data={"name": f"case {n}", **case})
    return suite


@dataclass
class Hook:
    """A real eval hook; ``answer(handler, payload)`` writes each reply."""

    answer: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]
    port: int = 0
    requests: list[tuple[Any, bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/eval"


def reply(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def good_answer(outcome: str = "triaged", tools: list[str] | None = None, finished: bool = True):
    def answer(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
        body = {"outcome": outcome, "tools": tools or [], "finished": finished}
        reply(handler, json.dumps(body).encode())

    return answer


@contextmanager
def serve_hook(answer: Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]) -> Iterator[Hook]:
    hook = Hook(answer)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hook.requests.append((self.headers, body))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # Tether gave up
                hook.answer(self, json.loads(body))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def hook_suite(org: Any, agent: Agent, url: str, *cases: dict[str, Any]) -> EvalSuite:
    suite = suite_create(
        actor=org.owner,
        agent=agent,
        data={"name": "Replays", "mode": "hook", "hook_url": url, "hook_secret": SECRET},
    )
    for n, case in enumerate(cases, 1):
        case_add(actor=org.owner, suite=suite, data={"name": f"case {n}", **case})
    return suite


def why(run: EvalRun) -> list[str]:
    return [result["why"] for result in run.results]


@pytest.fixture
def agent(org) -> Agent:
    return make_agent(org)


@pytest.fixture
def v1(agent) -> AgentVersion:
    return agent.versions.get(number=1)


# --- recorded suites ---------------------------------------------------------------------------


def test_recorded_case_passes_on_a_finished_run_with_the_outcome_and_the_required_tools(
    org, agent, v1
):
    suite = recorded_suite(
        org,
        agent,
        {
            "task": "Triage claim 42",
            "expected_outcome": "triaged",
            "required_tools": ["crm-lookup"],
        },
    )
    record_run(agent, v1, "Triage claim 42", tools={"crm-lookup": Disposition.ALLOW})

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert (run.passed, run.total, run.pass_rate, run.verdict) == (1, 1, 100.0, "passed")
    assert run.results == [{"case": "case 1", "passed": True, "why": "all checks passed"}]
    assert EvalRun.objects.filter(pk=run.pk, actor_name="alice").exists()


def test_recorded_case_judges_a_run_made_through_the_runtime(org, agent, v1):
    credential, _ = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="worker"
    )
    started, _ = runtime.run_start(credential=credential, task="Triage claim 7")
    decide(started, "crm-lookup", Disposition.MODIFY)  # a modified call still reached the tool
    runtime.run_finish(run=started, state=RunState.FINISHED, outcome="escalated")
    suite = recorded_suite(
        org,
        agent,
        {
            "task": "Triage claim 7",
            "expected_outcome": "escalated",
            "required_tools": ["crm-lookup"],
        },
    )

    assert suite_evaluate(suite=suite, version=v1, actor_name="alice").passed == 1


def test_recorded_case_without_an_ended_run_of_the_version_fails(org, agent, v1):
    v2 = new_version(org, agent, "Triage the claim, briefly.")
    record_run(agent, v1, "Triage claim 42")  # another version
    record_run(agent, v2, "Triage claim 42", state=RunState.RUNNING)  # not ended yet
    record_run(agent, v2, "Triage claim 43")  # another task
    suite = recorded_suite(org, agent, {"task": "Triage claim 42"})

    run = suite_evaluate(suite=suite, version=v2, actor_name="alice")

    assert run.passed == 0
    assert why(run) == ["no recorded run of v2 for this task"]


def test_recorded_case_fails_when_the_run_did_not_finish(org, agent, v1):
    suite = recorded_suite(org, agent, {"task": "Triage claim 42"})
    failed = record_run(agent, v1, "Triage claim 42", state=RunState.FAILED, outcome="")

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert run.passed == 0
    assert why(run) == [f"did not finish (run {str(failed.pk)[:8]} failed)"]


def test_a_case_that_need_not_finish_accepts_a_killed_run(org, agent, v1):
    suite = recorded_suite(org, agent, {"task": "Triage claim 42", "must_finish": False})
    record_run(agent, v1, "Triage claim 42", state=RunState.KILLED, outcome="")

    assert suite_evaluate(suite=suite, version=v1, actor_name="alice").passed == 1


def test_recorded_case_fails_on_another_outcome(org, agent, v1):
    suite = recorded_suite(org, agent, {"task": "Triage claim 42", "expected_outcome": "triaged"})
    record_run(agent, v1, "Triage claim 42", outcome="escalated")

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == ["outcome 'escalated', expected 'triaged'"]


def test_a_required_tool_that_tether_denied_was_not_called(org, agent, v1):
    suite = recorded_suite(
        org, agent, {"task": "Triage claim 42", "required_tools": ["crm-lookup", "case-notes"]}
    )
    record_run(
        agent,
        v1,
        "Triage claim 42",
        tools={"crm-lookup": Disposition.DENY, "case-notes": Disposition.ALLOW},
    )

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == ["required tool(s) not called: crm-lookup"]


def test_recorded_case_fails_when_a_forbidden_tool_was_called(org, agent, v1):
    suite = recorded_suite(
        org, agent, {"task": "Triage claim 42", "forbidden_tools": ["payment-refund", "crm-delete"]}
    )
    record_run(
        agent,
        v1,
        "Triage claim 42",
        tools={"payment-refund": Disposition.ALLOW, "crm-delete": Disposition.DENY},
    )

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == ["forbidden tool(s) called: payment-refund"]


def test_recorded_case_is_judged_on_the_latest_ended_run_of_its_task(org, agent, v1):
    suite = recorded_suite(org, agent, {"task": "Triage claim 42", "expected_outcome": "triaged"})
    record_run(agent, v1, "Triage claim 42", outcome="triaged", ended_ago=timedelta(hours=2))
    record_run(agent, v1, "Triage claim 42", outcome="gave up", ended_ago=timedelta(minutes=5))
    record_run(agent, v1, "Triage claim 42", state=RunState.RUNNING)

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == ["outcome 'gave up', expected 'triaged'"]


def test_every_failed_check_of_a_case_is_named(org, agent, v1):
    suite = recorded_suite(
        org,
        agent,
        {
            "task": "Triage claim 42",
            "expected_outcome": "triaged",
            "required_tools": ["crm-lookup"],
            "forbidden_tools": ["payment-refund"],
        },
        {"task": "Triage claim 43"},
    )
    record_run(
        agent,
        v1,
        "Triage claim 42",
        state=RunState.FAILED,
        outcome="",
        tools={"payment-refund": Disposition.MODIFY},
    )
    record_run(agent, v1, "Triage claim 43")

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert (run.passed, run.total, run.pass_rate) == (1, 2, 50.0)
    assert why(run)[0].split("; ")[1:] == [
        "no outcome, expected 'triaged'",
        "required tool(s) not called: crm-lookup",
        "forbidden tool(s) called: payment-refund",
    ]
    assert [result["passed"] for result in run.results] == [False, True]


# --- hook suites -------------------------------------------------------------------------------


def test_hook_suite_passes_through_a_real_hook_that_gets_a_signed_case(org, agent, v1):
    with serve_hook(good_answer(tools=["crm-lookup"])) as hook:
        suite = hook_suite(
            org,
            agent,
            hook.url,
            {
                "task": "Triage claim 42",
                "input": {"claim": 42},
                "expected_outcome": "triaged",
                "required_tools": ["crm-lookup"],
                "forbidden_tools": ["payment-refund"],
            },
        )
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert (run.passed, run.total, run.verdict) == (1, 1, "passed")
    [(headers, body)] = hook.requests
    assert json.loads(body) == {
        "suite": "replays",
        "case": "case 1",
        "task": "Triage claim 42",
        "input": {"claim": 42},
        "version": 1,
        "behaviour": version_behaviour(v1),
    }
    assert json.loads(body)["behaviour"]["instructions"] == "Triage the claim."
    timestamp = headers["X-Tether-Timestamp"]
    assert headers["X-Tether-Signature"] == signature(SECRET, timestamp, body)
    assert headers["X-Tether-Event"] == "eval.case"


def test_hook_suite_judges_what_the_hook_says_the_agent_did(org, agent, v1):
    answer = good_answer(outcome="refunded", tools=["payment-refund"], finished=False)
    with serve_hook(answer) as hook:
        suite = hook_suite(
            org,
            agent,
            hook.url,
            {
                "task": "Triage claim 42",
                "expected_outcome": "triaged",
                "required_tools": ["crm-lookup"],
                "forbidden_tools": ["payment-refund"],
            },
        )
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == [
        "did not finish (the hook says it did not); outcome 'refunded', expected 'triaged'; "
        "required tool(s) not called: crm-lookup; forbidden tool(s) called: payment-refund"
    ]


def test_a_hook_that_does_not_answer_in_time_fails_the_case(org, agent, v1, monkeypatch):
    monkeypatch.setattr(evals, "HOOK_TIMEOUT_SECONDS", 0.3)

    def slow(handler, payload):
        time.sleep(1.5)
        reply(handler, b'{"outcome": "", "tools": [], "finished": true}')

    with serve_hook(slow) as hook:
        suite = hook_suite(org, agent, hook.url, {"task": "Triage claim 42"})
        began = time.monotonic()
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert time.monotonic() - began < 1.4
    assert run.passed == 0
    assert why(run) == ["the hook at 127.0.0.1 did not answer within 0.3 s"]


def test_a_hook_dripping_its_answer_is_cut_off_at_the_timeout(org, agent, v1, monkeypatch):
    monkeypatch.setattr(evals, "HOOK_TIMEOUT_SECONDS", 0.5)

    def drip(handler, payload):
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        for _ in range(100):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)

    with serve_hook(drip) as hook:
        suite = hook_suite(org, agent, hook.url, {"task": "Triage claim 42"})
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert why(run) == ["the hook at 127.0.0.1 did not answer within 0.5 s"]


def _raw(body: bytes, status: int = 200, **headers: str):
    def answer(handler, payload):
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


EXPECTED = '{"outcome": str, "tools": [str], "finished": bool}'


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_raw(b"<html>Bad gateway</html>"), "the hook's reply is not JSON"),
        (_raw(b'{"outcome": "\xc3\x28"}'), "the hook's reply is not JSON"),
        (_raw(b"[" * 50_000 + b"]" * 10_000), "the hook's reply is not JSON"),
        (_raw(b'["triaged"]'), f"the hook's reply is not a JSON object like {EXPECTED}"),
        (
            _raw(b'{"tools": [], "finished": true}'),
            f'the hook\'s reply has no "outcome" string (expected {EXPECTED})',
        ),
        (
            _raw(b'{"outcome": "triaged", "tools": [1], "finished": true}'),
            f'the hook\'s reply has no "tools" list of names (expected {EXPECTED})',
        ),
        (
            _raw(b'{"outcome": "triaged", "tools": [], "finished": "yes"}'),
            f'the hook\'s reply has no "finished" true/false (expected {EXPECTED})',
        ),
        (_raw(b'{"error": "boom"}', status=500), "the hook at 127.0.0.1 answered HTTP 500"),
        (
            _raw(b"", status=302, Location="https://example.com/"),
            "the hook at 127.0.0.1 answered HTTP 302 (redirects are not followed: use the "
            "final URL)",
        ),
        (
            _raw(b'{"outcome": "' + b"x" * 70_000 + b'", "tools": [], "finished": true}'),
            "the hook's reply is larger than 64 KiB",
        ),
    ],
    ids=[
        "html", "not-utf8", "nested", "list", "no-outcome", "bad-tools", "bad-finished",
        "http-500", "redirect", "huge",
    ],
)  # fmt: skip
def test_a_hook_answering_garbage_fails_the_case_with_a_reason(org, agent, v1, answer, expected):
    with serve_hook(answer) as hook:
        suite = hook_suite(org, agent, hook.url, {"task": "Triage claim 42"}, {"task": "Again"})
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert (run.passed, run.total, run.verdict) == (0, 2, "blocked")
    assert why(run) == [expected, expected]


def test_a_hook_quoting_a_huge_outcome_is_quoted_briefly(org, agent, v1):
    with serve_hook(good_answer(outcome="no" * 20_000)) as hook:
        suite = hook_suite(
            org, agent, hook.url, {"task": "Triage claim 42", "expected_outcome": "triaged"}
        )
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert len(why(run)[0]) < 120
    assert why(run)[0].endswith("…', expected 'triaged'")


def test_an_unreachable_hook_fails_the_case(org, agent, v1):
    with serve_hook(good_answer()) as hook:
        url = hook.url
    suite = hook_suite(org, agent, url, {"task": "Triage claim 42"})  # the server is gone

    run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert run.passed == 0
    assert why(run)[0].startswith("could not reach the hook at 127.0.0.1: ")


def test_cases_left_when_a_hook_suite_runs_out_of_time_fail_unplayed(org, agent, v1, monkeypatch):
    monkeypatch.setattr(evals, "HOOK_SUITE_DEADLINE_SECONDS", 0.0)
    with serve_hook(good_answer()) as hook:
        suite = hook_suite(org, agent, hook.url, {"task": "Triage claim 42"})
        run = suite_evaluate(suite=suite, version=v1, actor_name="alice")

    assert hook.requests == []
    assert why(run) == ["not replayed: the suite ran out of its 0 s"]


# --- writing suites ----------------------------------------------------------------------------


def test_owner_creates_a_suite_and_adds_cases_audited_without_the_secret(org, agent):
    suite = suite_create(
        actor=org.owner,
        agent=agent,
        data={
            "name": " Refund safety ",
            "mode": "hook",
            "hook_url": "https://agents.example.com/eval",
            "hook_secret": SECRET,
            "min_pass_rate": 95,
        },
    )
    case = case_add(
        actor=org.owner,
        suite=suite,
        data={"name": "no refund", "task": "Triage claim 42", "forbidden_tools": ["refund"]},
    )

    assert (suite.name, suite.slug, suite.min_pass_rate, suite.max_regression_points) == (
        "Refund safety", "refund-safety", 95, 5,
    )  # fmt: skip
    assert (case.must_finish, case.expected_outcome, case.input) == (True, "", {})
    created = AuditEvent.objects.get(action="releases.suite.created")
    assert (created.target_type, created.target_id) == ("agent", str(agent.pk))
    assert created.actor_name == "alice"
    assert SECRET not in json.dumps(created.after)
    assert created.after["hook_secret"]  # a fingerprint: replacing it shows
    added = AuditEvent.objects.get(action="releases.case.added")
    assert added.after["forbidden_tools"] == ["refund"]


def test_an_admin_may_create_a_suite_for_any_agent(org, agent):
    suite = suite_create(actor=org.admin, agent=agent, data={"name": "Admin's"})
    assert suite.mode == "recorded"


@pytest.mark.parametrize("who", ["outsider", "other_owner", "approver", "auditor"])
def test_only_the_owner_or_an_admin_may_write_suites(org, agent, who):
    person = getattr(org, who)
    with pytest.raises(NotPermitted):
        suite_create(actor=person, agent=agent, data={"name": "Sneaky"})
    suite = suite_create(actor=org.owner, agent=agent, data={"name": "Mine"})
    with pytest.raises(NotPermitted):
        case_add(actor=person, suite=suite, data={"name": "x", "task": "y"})
    with pytest.raises(NotPermitted):
        suite_delete(actor=person, suite=suite)
    assert EvalSuite.objects.filter(agent=agent).count() == 1
    assert not EvalCase.objects.exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "This field cannot be blank."),
        ({"name": "x" * 101}, "name", "Ensure this value has at most 100 characters"),
        ({"name": "Fine", "slug": "Not A Slug"}, "slug", "Use lowercase letters"),
        ({"name": "Fine", "mode": "vibes"}, "mode", "Value 'vibes' is not a valid choice."),
        ({"name": "Fine", "min_pass_rate": 101}, "min_pass_rate", "less than or equal to 100"),
        ({"name": "Fine", "min_pass_rate": "lots"}, "min_pass_rate", "must be an integer"),
        ({"name": "Fine", "mode": "hook", "hook_secret": SECRET}, "hook_url", "needs the URL"),
        (
            {
                "name": "Fine",
                "mode": "hook",
                "hook_url": "ftp://x.example.com/",
                "hook_secret": SECRET,
            },
            "hook_url",
            "Enter a full http:// or https:// URL",
        ),
        (
            {"name": "Fine", "mode": "hook", "hook_url": "https://x.example.com/"},
            "hook_secret",
            "Set a signing secret",
        ),
        (
            {
                "name": "Fine",
                "mode": "hook",
                "hook_url": "https://x.example.com/",
                "hook_secret": "short",
            },
            "hook_secret",
            "Use 16 to 200 characters",
        ),
        ({"name": "Fine", "hook_url": "https://x.example.com/"}, "hook_url", "leave this empty"),
        ({"name": "Fine", "colour": "red"}, "colour", "Unknown field."),
    ],
)
def test_suite_input_is_checked(org, agent, data, field, message):
    with pytest.raises(ApplicationError) as caught:
        suite_create(actor=org.owner, agent=agent, data=data)
    assert message in " ".join(caught.value.details[field])
    assert not EvalSuite.objects.exists()


def test_a_suite_slug_is_unique_per_agent(org, agent):
    suite_create(actor=org.owner, agent=agent, data={"name": "Triage"})
    other = make_agent(org, "claims-intake")
    suite_create(actor=org.owner, agent=other, data={"name": "Triage"})

    with pytest.raises(ApplicationError) as caught:
        suite_create(actor=org.owner, agent=agent, data={"name": "Triage"})
    assert "already has a suite 'triage'" in caught.value.details["slug"][0]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "task": "t"}, "name", "cannot be blank"),
        ({"name": "n", "task": "   "}, "task", "Say what the agent is asked to do."),
        ({"name": "n", "task": "t" * 2001}, "task", "At most 2000 characters"),
        (
            {"name": "n", "task": "t", "expected_outcome": "o" * 101},
            "expected_outcome",
            "at most 100",
        ),
        ({"name": "n", "task": "t", "input": ["not", "an", "object"]}, "input", "JSON object"),
        (
            {"name": "n", "task": "t", "input": {"blob": "x" * 17_000}},
            "input",
            "Larger than 16 KiB",
        ),
        (
            {"name": "n", "task": "t", "required_tools": "crm-lookup"},
            "required_tools",
            "list of slugs",
        ),
        (
            {"name": "n", "task": "t", "forbidden_tools": ["x"] * 51},
            "forbidden_tools",
            "At most 50",
        ),
        (
            {"name": "n", "task": "t", "required_tools": ["a", "b"], "forbidden_tools": ["b"]},
            "forbidden_tools",
            "Both required and forbidden: b.",
        ),
        (
            {"name": "n", "task": "t", "must_finish": "maybe"},
            "must_finish",
            "must be either True or False",
        ),
        ({"name": "n", "task": "t", "weight": 2}, "weight", "Unknown field."),
    ],
)
def test_case_input_is_checked(org, agent, data, field, message):
    suite = suite_create(actor=org.owner, agent=agent, data={"name": "Triage"})
    with pytest.raises(ApplicationError) as caught:
        case_add(actor=org.owner, suite=suite, data=data)
    assert message in " ".join(caught.value.details[field])
    assert not EvalCase.objects.exists()


def test_case_names_are_unique_in_a_suite(org, agent):
    suite = suite_create(actor=org.owner, agent=agent, data={"name": "Triage"})
    case_add(actor=org.owner, suite=suite, data={"name": "claim 42", "task": "Triage claim 42"})

    with pytest.raises(ApplicationError) as caught:
        case_add(actor=org.owner, suite=suite, data={"name": "claim 42", "task": "Other"})
    assert "already has a case named 'claim 42'" in caught.value.message


def test_a_suite_holds_at_most_500_cases(org, agent):
    suite = suite_create(actor=org.owner, agent=agent, data={"name": "Triage"})
    EvalCase.objects.bulk_create(
        EvalCase(suite=suite, name=f"case {n}", task=f"Task {n}") for n in range(499)
    )
    case_add(actor=org.owner, suite=suite, data={"name": "the 500th", "task": "Last"})

    with pytest.raises(ApplicationError) as caught:
        case_add(actor=org.owner, suite=suite, data={"name": "one more", "task": "Too many"})
    assert caught.value.message == (
        "Triage holds 500 cases, as many as a suite may: start another suite."
    )
    assert suite.cases.count() == 500


def test_deleting_a_suite_removes_its_cases_and_runs_and_is_audited(org, agent, v1):
    suite = recorded_suite(org, agent, {"task": "Triage claim 42"})
    suite_evaluate(suite=suite, version=v1, actor_name="alice")

    suite_delete(actor=org.owner, suite=suite)

    assert not EvalSuite.objects.exists()
    assert not EvalCase.objects.exists()
    assert not EvalRun.objects.exists()
    deleted = AuditEvent.objects.get(action="releases.suite.deleted")
    assert (deleted.before["slug"], deleted.before["cases"], deleted.before["runs"]) == (
        "triage-basics", 1, 1,
    )  # fmt: skip
