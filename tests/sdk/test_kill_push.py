"""The kill switch reaching the SDK: pushed over the run's control socket, a kill stops a sync
run's next step before it is asked, wakes a step waiting for people, and aborts an async run's
work in flight; without the socket, the next check learns it and the run stays killed.

Against the whole ASGI application served by uvicorn in a thread (tests/browser/helpers.py),
with the Redis channel layer; the kill is engaged through its service from this thread, as
the console does. The last tests use the scripted fake (tests/sdk/fakes.py) for what a live
Tether cannot be made to do on cue.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import tether
from tether._base import control_url, control_wanted

from apps.killswitch import services as kills
from apps.killswitch.models import KillSwitch
from apps.runtime.models import Decision, Run

from ..browser.helpers import ASGIServer
from ..factories import make_tool
from .fakes import AGENT_KEY, URL, FakeTether, decision

APPROVAL_ID = "0f6b7f5e-8a55-4c1e-9d43-6f4b0b7c2a10"
ABORT_SECONDS = 1.0  # "connected SDKs abort within 1 s"


@dataclass
class KillableAgent:
    url: str
    key: str
    agent: Any
    owner: Any


@pytest.fixture
def killable(org: Any, fresh_runtime: None, transactional_db: None) -> Iterator[KillableAgent]:
    from apps.approvals.gates import forget_gates
    from apps.common import hotpath
    from apps.registry import services as registry
    from apps.runtime import services as runtime
    from apps.traces import receiver

    forget_gates()
    lookup = make_tool("crm-lookup", actions=["read"], input_schema={"type": "object"})
    refund = make_tool(
        "payments-refund", actions=["create"], risk_class="critical",  # asks a person
        input_schema={"type": "object"},
    )  # fmt: skip
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims triage",
            "slug": "claims-triage",
            "mission": "Triage incoming claims.",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    for tool, action in ((lookup, "read"), (refund, "create")):
        registry.grant_set(
            actor=org.owner, agent=agent, tool=tool, actions=[action], environments=["prod"]
        )
    _credential, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="sdk kill push"
    )
    server = ASGIServer()
    server.start()
    yield KillableAgent(server.url, issued.plaintext, agent, org.owner)
    server.stop()
    hotpath.shut_down()
    receiver.shut_down()
    forget_gates()


@pytest.fixture
def client(killable: KillableAgent) -> Iterator[tether.Client]:
    with tether.Client(killable.url, killable.key) as sync_client:
        yield sync_client


def until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``seconds`` pass; whether it held."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def kill_run(killable: KillableAgent, run_id: str, reason: str = "Wrong customer") -> KillSwitch:
    return kills.kill_engage(
        actor=killable.owner, scope="run", run=Run.objects.get(pk=run_id), reason=reason
    )


def test_a_pushed_kill_reaches_a_sync_run_within_a_second_and_no_tool_body_starts_after(
    killable, client
) -> None:
    ran: list[str] = []
    told: list[tuple[float, tether.Kill | None]] = []

    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> str:
        ran.append(customer_id)
        return customer_id

    with client.run("Triage claim 4711") as run:
        run.on_kill(lambda killed: told.append((time.monotonic(), killed.kill)))
        assert until(lambda: run.control_connected), "the control socket never opened"
        assert crm_lookup("c-1") == "c-1"
        engaged = time.monotonic()
        kill = kill_run(killable, run.id)

        assert run.killed.wait(timeout=10)
        [(at, kill_seen)] = told
        assert at - engaged < ABORT_SECONDS
        asked = Decision.objects.filter(run_id=run.id).count()
        with pytest.raises(tether.RunKilled) as caught:
            crm_lookup("c-2")
        with pytest.raises(tether.RunKilled):
            run.check_model("large-model", 10, 10)

    assert ran == ["c-1"]
    assert Decision.objects.filter(run_id=run.id).count() == asked  # raised without asking
    assert kill_seen is not None and kill_seen == run.kill
    assert (kill_seen.kill_switch, kill_seen.scope, kill_seen.reason, kill_seen.engaged_by) == (
        kill.pk,
        "run",
        "Wrong customer",
        "alice",
    )
    assert run.kill_reason == "Wrong customer"
    assert caught.value.kill == kill_seen and isinstance(caught.value, tether.RunEnded)
    assert "alice" in str(caught.value) and "Wrong customer" in str(caught.value)
    assert not run.control_connected
    # The kill is the run's end: leaving the block did not finish it over the top.
    assert Run.objects.get(pk=run.id).state == "killed"


def test_a_step_waiting_for_people_ends_with_the_kill(killable, client) -> None:
    ran: list[str] = []
    out: dict[str, Any] = {}

    @client.governed_tool("payments-refund", action="create", wait_for_approval=True)
    def refund(order: str) -> None:
        ran.append(order)

    def agent() -> None:
        with client.run("Refund A-1") as run:
            out["run"] = run
            try:
                refund("A-1")
            except BaseException as exc:
                out["error"], out["at"] = exc, time.monotonic()

    thread = threading.Thread(target=agent, name="agent")
    thread.start()
    from apps.approvals.models import ApprovalRequest

    assert until(lambda: ApprovalRequest.objects.filter(agent=killable.agent).exists())
    assert until(lambda: "run" in out and out["run"].control_connected)
    engaged = time.monotonic()
    kill_run(killable, out["run"].id, reason="Refund loop")
    thread.join(timeout=15)

    assert not thread.is_alive()
    assert isinstance(out["error"], tether.RunKilled), out.get("error")
    assert out["at"] - engaged < ABORT_SECONDS
    assert ran == []
    assert ApprovalRequest.objects.get(agent=killable.agent).status == "cancelled"


def test_a_pushed_kill_aborts_an_async_runs_work_in_flight(killable) -> None:
    connected = threading.Event()
    out: dict[str, Any] = {}

    async def agent() -> None:
        client = tether.AsyncClient(killable.url, killable.key)
        try:
            async with client.run("Triage claim 4711") as run:
                out["run"] = run
                while not run.control_connected:
                    await asyncio.sleep(0.01)
                connected.set()
                await asyncio.sleep(30)  # the work in flight
                out["slept"] = True
        except BaseException as exc:
            out["error"], out["at"] = exc, time.monotonic()
        finally:
            await client.aclose()

    thread = threading.Thread(target=asyncio.run, args=(agent(),), name="async-agent")
    thread.start()
    assert connected.wait(timeout=15), "the control socket never opened"
    engaged = time.monotonic()
    kill = kill_run(killable, out["run"].id, reason="Runaway")
    thread.join(timeout=15)

    assert not thread.is_alive()
    assert "slept" not in out
    error = out["error"]
    assert isinstance(error, tether.RunKilled), repr(error)  # not CancelledError
    assert out["at"] - engaged < ABORT_SECONDS
    assert (error.kill.kill_switch, error.kill.reason) == (kill.pk, "Runaway")
    assert out["run"].killed.is_set()
    assert Run.objects.get(pk=out["run"].id).state == "killed"


def test_without_the_socket_the_next_check_learns_the_kill_and_later_ones_ask_no_more(
    killable, client
) -> None:
    told: list[Any] = []
    with client.run("Triage", control=False) as run:
        run.on_kill(told.append)
        run.check_tool("crm-lookup", {"id": "c-1"}, action="read")
        kill_run(killable, run.id)
        assert not run.killed.is_set()  # nothing pushed: the run cannot know yet

        with pytest.raises(tether.RunKilled) as first:
            run.check_tool("crm-lookup", {"id": "c-2"}, action="read")
        asked = Decision.objects.filter(run_id=run.id).count()
        with pytest.raises(tether.RunKilled):
            run.check_tool("crm-lookup", {"id": "c-3"}, action="read")
        with pytest.raises(tether.RunKilled):
            run.raise_if_killed()

    assert run.killed.is_set() and told == [run]
    assert first.value.state == "killed" and "run_killed" in first.value.reasons
    assert Decision.objects.filter(run_id=run.id).count() == asked


# --- what the fake can make happen on cue ---------------------------------------------------


def fake_client(fake: FakeTether, **options: Any) -> tether.Client:
    return tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake), **options)


def killed_message(**extra: Any) -> str:
    message = {
        "type": "killed",
        "kill_switch": 12,
        "scope": "agent",
        "target": "claims-triage",
        "reason": "Loop",
        "engaged_by": "ada",
        "automatic": False,
    }
    return json.dumps({**message, **extra})


def test_a_push_wakes_a_wait_for_approval_at_once() -> None:
    """The long-poll itself is still waiting (the fake holds it); the push alone ends it."""
    fake = FakeTether()
    release = threading.Event()

    def held(request: httpx.Request) -> httpx.Response:
        release.wait(timeout=30)
        return httpx.Response(200, json={"id": APPROVAL_ID, "status": "pending"})

    fake.queue(f"/api/v1/approvals/{APPROVAL_ID}/wait/", held)
    out: dict[str, Any] = {}
    with fake_client(fake).run("Refund") as run:

        def wait() -> None:
            try:
                run.wait_for_approval(APPROVAL_ID)
            except BaseException as exc:
                out["error"] = exc

        waiter = threading.Thread(target=wait)
        waiter.start()
        assert until(lambda: any("wait" in r.url.path for r in fake.requests))
        assert run._on_control(killed_message()) is True
        waiter.join(timeout=5)
        release.set()

    assert not waiter.is_alive()
    assert isinstance(out["error"], tether.RunKilled)
    assert out["error"].kill.engaged_by == "ada"
    assert fake.sent("finish") == []  # the killed run is not finished over the top


def test_a_kill_pushed_while_a_decision_is_on_its_way_keeps_the_body_from_starting() -> None:
    fake = FakeTether()
    ran: list[str] = []
    client = fake_client(fake)

    def allow_then_kill(request: httpx.Request) -> httpx.Response:
        run = client.current_run()
        run._on_control(killed_message())  # the push lands before the answer
        return httpx.Response(200, json=decision())

    fake.queue("decisions/", allow_then_kill)

    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> None:
        ran.append(customer_id)

    with client.run("Triage"), pytest.raises(tether.RunKilled):
        crm_lookup("c-1")
    assert ran == []


def test_a_deny_with_reason_run_killed_and_a_401_run_killed_both_raise_run_killed() -> None:
    fake = FakeTether()
    fake.queue(
        "decisions/",
        httpx.Response(
            200,
            json=decision(
                "deny", reasons=["run_killed"], reasoning="A kill switch stopped this run."
            ),
        ),
    )
    with fake_client(fake).run("Triage") as run:
        with pytest.raises(tether.RunKilled) as denied:
            run.check_tool("crm-lookup", {"id": "c-1"})
        assert run.killed.is_set() and run.kill_reason == "A kill switch stopped this run."
        assert denied.value.decision.id == 7  # Tether's own recorded deny
    assert len(fake.sent("decisions/")) == 1

    other = FakeTether()
    other.queue(
        "decisions/",
        httpx.Response(
            401,
            json={"error": {"code": "run_killed", "message": "This run is killed.", "details": {}}},
        ),
    )
    with fake_client(other).run("Triage") as run, pytest.raises(tether.RunKilled):
        run.check_tool("crm-lookup", {"id": "c-1"})
    assert run.state == "killed"


def test_on_kill_registered_after_the_kill_is_called_at_once_and_callbacks_run_once() -> None:
    calls: list[str] = []
    with fake_client(FakeTether()).run("Triage") as run:
        run.on_kill(lambda _run: calls.append("before"))
        run._on_control(killed_message())
        run._on_control_closed(4410)  # the close after the message: no second kill
        run.on_kill(lambda _run: calls.append("after"))
    assert calls == ["before", "after"]
    assert run.kill is not None and run.kill.kill_switch == 12


def test_the_socket_closing_4410_without_a_message_still_kills_and_4401_gives_up() -> None:
    with fake_client(FakeTether()).run("Triage") as run:
        assert run._on_control_closed(4401) is True and run.kill is None
        assert run._on_control_closed(1006) is False  # dropped: connect again
        assert run._on_control_closed(4410) is True
        assert run.killed.is_set()


def test_a_run_ended_another_way_is_over_for_the_socket_and_later_checks() -> None:
    fake = FakeTether()
    with fake_client(fake).run("Triage") as run:
        assert run._on_control('{"type": "state", "state": "running"}') is False
        assert run.control_connected
        assert run._on_control('{"type": "pong"}') is False
        assert run._on_control('{"type": "state", "state": "expired"}') is True
        with pytest.raises(tether.RunEnded) as caught:
            run.check_tool("crm-lookup", {"id": "c-1"})
    assert caught.value.state == "expired" and not isinstance(caught.value, tether.RunKilled)
    assert fake.sent("decisions/") == []


def test_the_control_setting(monkeypatch) -> None:
    monkeypatch.delenv("TETHER_CONTROL", raising=False)
    assert control_wanted(None, custom_transport=False) is True
    assert control_wanted(None, custom_transport=True) is False  # a test's MockTransport
    assert control_wanted(True, custom_transport=True) is True
    monkeypatch.setenv("TETHER_CONTROL", "0")
    assert control_wanted(None, custom_transport=False) is False
    assert control_wanted(True, custom_transport=False) is True  # the argument wins
    monkeypatch.setenv("TETHER_CONTROL", "maybe")
    with pytest.raises(tether.ConfigurationError, match="TETHER_CONTROL"):
        control_wanted(None, custom_transport=False)
    assert control_url("https://tether.example/base", "r-1") == (
        "wss://tether.example/base/ws/agents/runs/r-1/control/"
    )
    assert control_url("http://127.0.0.1:8000", "r-1").startswith("ws://127.0.0.1:8000/ws/")
