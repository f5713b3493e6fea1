"""The synchronous client against a scripted Tether: runs, checks and what each disposition does."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import tether
from tether import _base

from .fakes import AGENT_KEY, RUN_ID, RUN_TOKEN, URL, FakeTether, decision, error


@pytest.fixture
def fake() -> FakeTether:
    return FakeTether()


@pytest.fixture
def client(fake: FakeTether) -> tether.Client:
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake))
    client._sleep = lambda seconds: None
    return client


def test_client_reads_url_and_agent_key_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("TETHER_URL", "https://tether.example.com/")
    monkeypatch.setenv("TETHER_AGENT_KEY", AGENT_KEY)
    client = tether.Client()
    assert client.url == "https://tether.example.com"
    assert client.agent_key == AGENT_KEY


def test_client_without_url_or_key_says_which_is_missing(monkeypatch) -> None:
    monkeypatch.delenv("TETHER_URL", raising=False)
    monkeypatch.delenv("TETHER_AGENT_KEY", raising=False)
    with pytest.raises(tether.ConfigurationError, match="TETHER_URL"):
        tether.Client()
    with pytest.raises(tether.ConfigurationError, match="TETHER_AGENT_KEY"):
        tether.Client(URL)


def test_client_refuses_a_personal_token_as_agent_key() -> None:
    with pytest.raises(tether.ConfigurationError, match="tth_agent_"):
        tether.Client(URL, "tth_user_0123abcd_secret")


def test_run_starts_with_the_agent_key_and_keeps_the_run_token(client, fake) -> None:
    with client.run(
        "Triage claim 4711", intent="triage", on_behalf_of="alice", parent_run="p-1"
    ) as run:
        assert run.id == RUN_ID
        assert run.token == RUN_TOKEN
        assert run.failure_posture == "fail_closed"
        assert run.envelope.allows_tool("crm-lookup", "read")
        assert not run.envelope.allows_tool("crm-lookup", "update")
        assert run.envelope.memory == {"notes": "read"}
        assert run.version == 3
        assert tether.active_run() is run
    assert tether.active_run() is None
    assert fake.sent("runs/") == [
        {
            "task": "Triage claim 4711",
            "intent": "triage",
            "on_behalf_of": "alice",
            "parent_run": "p-1",
        }
    ]
    assert fake.headers("runs/") == [f"Bearer {AGENT_KEY}"]
    assert fake.headers("finish") == [f"Bearer {RUN_TOKEN}"]


def test_run_token_stays_out_of_the_runs_repr(client) -> None:
    with client.run("Triage") as run:
        assert RUN_TOKEN not in repr(run)


def test_leaving_the_block_finishes_the_run_with_its_outcome(client, fake) -> None:
    with client.run("Triage") as run:
        run.outcome = "resolved"
    assert fake.sent("finish") == [{"state": "finished", "outcome": "resolved"}]
    assert run.state == "finished"


def test_an_exception_in_the_block_fails_the_run_with_its_class_name(client, fake) -> None:
    with pytest.raises(KeyError), client.run("Triage"):
        raise KeyError("claim")
    assert fake.sent("finish") == [{"state": "failed", "outcome": "KeyError"}]


def test_allow_returns_the_decision_with_the_arguments_asked_about(client, fake) -> None:
    with client.run("Triage") as run:
        result = run.check_tool("crm-lookup", {"id": "c-42"}, action="read", reason="look up")
    assert result.disposition == "allow"
    assert result.allowed
    assert result.arguments == {"id": "c-42"}
    assert result.id == 7
    assert result.budgets["calls"] == tether.Budget(
        limit=10, used=1, remaining=9, kind="tool_calls"
    )
    assert fake.sent("decisions/") == [
        {
            "action": "tool.invoke",
            "tool": "crm-lookup",
            "tool_action": "read",
            "arguments": {"id": "c-42"},
            "reason": "look up",
        }
    ]
    assert fake.headers("decisions/") == [f"Bearer {RUN_TOKEN}"]


def test_deny_raises_denied_carrying_the_decision(client, fake) -> None:
    fake.queue(
        "decisions/",
        httpx.Response(
            200,
            json=decision(
                "deny", reasons=["policy_denied"], reasoning="Forbidden.", policies=["no-prod"]
            ),
        ),
    )
    with client.run("Triage") as run, pytest.raises(tether.Denied) as caught:
        run.check_tool("payments-refund", {"amount": 5000})
    assert caught.value.disposition == "deny"
    assert caught.value.reasons == ("policy_denied",)
    assert caught.value.reasoning == "Forbidden."
    assert caught.value.policies == ("no-prod",)
    assert "policy_denied" in str(caught.value)


def test_modify_returns_the_modified_arguments(client, fake) -> None:
    fake.queue(
        "decisions/",
        httpx.Response(
            200, json=decision("modify", reasons=["policy_permitted"], arguments={"ssn": "***"})
        ),
    )
    with client.run("Triage") as run:
        result = run.check_tool("crm-update", {"ssn": "123-45-6789"}, action="update")
    assert result.disposition == "modify"
    assert result.allowed
    assert result.arguments == {"ssn": "***"}


def test_ask_raises_approval_required_with_the_decision(client, fake) -> None:
    fake.queue(
        "decisions/",
        httpx.Response(200, json=decision("ask", reasons=["approval_required"], approval=None)),
    )
    with client.run("Triage") as run, pytest.raises(tether.ApprovalRequired) as caught:
        run.check_tool("payments-refund", {"amount": 5000}, action="create")
    assert isinstance(caught.value, tether.Denied)
    assert caught.value.decision.reasons == ("approval_required",)


def defer(retry_after: int) -> httpx.Response:
    return httpx.Response(
        200, json=decision("defer", reasons=["rate_limited"], retry_after=retry_after)
    )


def test_a_defer_is_waited_out_and_asked_again_with_the_same_idempotency_key(fake) -> None:
    slept: list[float] = []
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake))
    client._sleep = slept.append
    fake.queue("decisions/", defer(2), defer(3))  # then the default: allow
    with client.run("Triage") as run:
        assert run.check_tool("crm-lookup", {"id": "c-42"}).disposition == "allow"
    assert slept == [2.0, 3.0]
    keys = [
        r.headers["Idempotency-Key"] for r in fake.requests if r.url.path.endswith("decisions/")
    ]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_a_defer_longer_than_the_defer_timeout_raises_deferred(fake) -> None:
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake), defer_timeout=5)
    client._sleep = lambda seconds: None
    fake.queue("decisions/", defer(3), defer(3))
    with client.run("Triage") as run, pytest.raises(tether.Deferred) as caught:
        run.check_tool("crm-lookup", {"id": "c-42"})
    assert caught.value.decision.retry_after == 3
    assert len(fake.sent("decisions/")) == 2  # waited 3 s once; 3 more would pass 5


def test_every_governed_step_has_its_own_idempotency_key(client, fake) -> None:
    with client.run("Triage") as run:
        run.check_tool("crm-lookup", {"id": "c-1"})
        run.check_tool("crm-lookup", {"id": "c-1"})
    keys = [
        r.headers["Idempotency-Key"] for r in fake.requests if r.url.path.endswith("decisions/")
    ]
    assert len(set(keys)) == 2


def test_a_retried_decision_after_a_5xx_keeps_its_idempotency_key(client, fake) -> None:
    fake.queue("decisions/", httpx.Response(503), httpx.ConnectError("reset"))
    with client.run("Triage") as run:
        run.check_tool("crm-lookup", {"id": "c-1"})
    keys = [
        r.headers["Idempotency-Key"] for r in fake.requests if r.url.path.endswith("decisions/")
    ]
    assert len(keys) == 3 and len(set(keys)) == 1


def test_check_model_returns_the_degraded_model(client, fake) -> None:
    fake.queue(
        "decisions/",
        httpx.Response(
            200, json=decision("modify", reasons=["budget_degraded"], model="small-model")
        ),
    )
    with client.run("Triage") as run:
        degraded = run.check_model("large-model", 1200, 300)
        plain = run.check_model("large-model", 10, 10)
    assert degraded.model == "small-model"
    assert plain.model == "large-model"
    assert fake.sent("decisions/")[0] == {
        "action": "model.call",
        "model": "large-model",
        "estimated_input_tokens": 1200,
        "estimated_output_tokens": 300,
    }


def test_report_usage_reconciles_the_decision_and_returns_the_budgets(client, fake) -> None:
    fake.queue(
        "usage/",
        httpx.Response(
            200,
            json={
                "reconciled": True,
                "budgets": {"spend": {"limit": "5.0000", "used": 0.25, "remaining": 4.75}},
            },
        ),
    )
    with client.run("Triage") as run:
        reserved = run.check_model("large-model", 1200, 300)
        budgets = run.report_usage(reserved, 1100, 250, cost_usd=0.25)
        run.report_usage(reserved, 1100, 250, cached_tokens=1000, provider="openai")
    assert fake.sent("usage/") == [
        {"decision": 7, "input_tokens": 1100, "output_tokens": 250, "cost_usd": 0.25},
        {
            "decision": 7, "input_tokens": 1100, "output_tokens": 250, "cached_tokens": 1000,
            "provider": "openai",
        },
    ]  # fmt: skip
    assert budgets == {"spend": tether.Budget(limit=5.0, used=0.25, remaining=4.75)}


def test_usage_of_a_decision_tether_never_saw_is_not_reported(client, fake) -> None:
    local = tether.Decision(id=None, disposition="allow", local=True)
    with client.run("Triage") as run:
        assert run.report_usage(local, 1, 1) is None
    assert fake.sent("usage/") == []


def test_memory_and_delegation_checks_send_their_actions(client, fake) -> None:
    with client.run("Triage") as run:
        run.check_memory("notes")
        run.check_memory("notes", write=True)
        run.check_delegate("fraud-screen")
    assert fake.sent("decisions/") == [
        {"action": "memory.read", "store": "notes"},
        {"action": "memory.write", "store": "notes"},
        {"action": "delegate", "agent": "fraud-screen"},
    ]


def test_a_killed_run_raises_run_ended_and_stops_asking(client, fake) -> None:
    fake.queue(
        "decisions/",
        httpx.Response(
            200, json=decision("deny", id=9, reasons=["run_not_running"], reasoning="killed")
        ),
    )
    with client.run("Triage") as run:
        with pytest.raises(tether.RunEnded):
            run.check_tool("crm-lookup", {"id": "c-42"})
        with pytest.raises(tether.RunEnded):
            run.check_tool("crm-lookup", {"id": "c-43"})
        assert run.ended
    assert len(fake.sent("decisions/")) == 1
    assert fake.sent("finish") == []  # nothing to finish: Tether already ended it


def test_conflict_run_not_running_raises_run_ended_with_the_state(client, fake) -> None:
    fake.queue("decisions/", error(409, "run_not_running", "The run is killed.", state="killed"))
    with client.run("Triage") as run, pytest.raises(tether.RunEnded) as caught:
        run.check_tool("crm-lookup", {"id": "c-42"})
    assert caught.value.state == "killed"
    assert caught.value.reasons == ("run_not_running",)
    assert run.state == "killed"


def test_heartbeats_keep_the_run_alive_while_the_block_runs(fake, monkeypatch) -> None:
    monkeypatch.setattr(_base, "MIN_HEARTBEAT_SECONDS", 0.01)
    fake.ttl_seconds = 0  # a 0 s token lifetime: the floor above sets the pace
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake))
    with client.run("Triage"):
        deadline = time.monotonic() + 5
        while len(fake.sent("heartbeat")) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(fake.sent("heartbeat")) >= 3
    assert set(fake.headers("heartbeat")) == {f"Bearer {RUN_TOKEN}"}
    assert not [t for t in threading.enumerate() if t.name.startswith("tether-heartbeat")]


def test_heartbeat_interval_is_a_third_of_the_token_lifetime(client, fake) -> None:
    fake.ttl_seconds = 900
    with client.run("Triage") as run:
        assert run.heartbeat_interval() == pytest.approx(300)


def test_a_heartbeat_told_the_run_was_killed_ends_the_run(fake, monkeypatch) -> None:
    monkeypatch.setattr(_base, "MIN_HEARTBEAT_SECONDS", 0.01)
    fake.ttl_seconds = 0
    fake.queue("heartbeat", error(409, "run_not_running", "Killed.", state="killed"))
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake))
    with client.run("Triage") as run:
        deadline = time.monotonic() + 5
        while not run.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(tether.RunEnded) as caught:
            run.check_tool("crm-lookup", {"id": "c-42"})
    assert caught.value.state == "killed"
    assert fake.sent("decisions/") == []
    assert fake.sent("finish") == []


def test_nested_runs_restore_the_outer_run(client) -> None:
    with client.run("Outer") as outer:
        with client.run("Inner", parent_run=outer.id) as inner:
            assert tether.active_run() is inner
        assert tether.active_run() is outer


def test_arguments_that_are_not_json_are_refused_before_sending(client, fake) -> None:
    with client.run("Triage") as run, pytest.raises(TypeError, match="JSON"):
        run.check_tool("crm-lookup", {"id": object()})
    assert fake.sent("decisions/") == []


def test_a_rejected_run_token_ends_the_run(client, fake) -> None:
    fake.queue(
        "decisions/",
        error(401, "authentication_failed", "This run is killed; its token no longer works."),
    )
    with client.run("Triage") as run:
        with pytest.raises(tether.RunTokenRejected) as caught:
            run.check_tool("crm-lookup", {"id": "c-42"})
        assert isinstance(caught.value, tether.Unauthorized)
        assert isinstance(caught.value, tether.RunEnded)
        assert caught.value.status == 401
        assert "killed" in str(caught.value)
        with pytest.raises(tether.RunEnded):
            run.check_model("large-model", 1, 1)
    assert len(fake.sent("decisions/")) == 1
    assert fake.sent("finish") == []


def test_check_model_can_send_an_estimated_cost(client, fake) -> None:
    with client.run("Triage") as run:
        run.check_model("large-model", 100, 10, estimated_cost_usd=0.02)
    assert fake.sent("decisions/")[0]["estimated_cost_usd"] == 0.02


def test_an_outcome_longer_than_tether_keeps_is_cut(client, fake) -> None:
    with client.run("Triage") as run:
        run.outcome = "x" * 500
    assert fake.sent("finish") == [{"state": "finished", "outcome": "x" * 100}]


def test_an_envelope_may_list_tools_with_their_grant_details() -> None:
    envelope = tether.Envelope.from_json(
        {
            "tools": {"crm-lookup": {"actions": ["read"], "constraints": {}, "expires_at": None}},
            "memory": {"notes": "read_write"},
        }
    )
    assert envelope.allows_tool("crm-lookup", "read")
    assert not envelope.allows_tool("crm-lookup", "delete")
    assert envelope.memory == {"notes": "read_write"}
