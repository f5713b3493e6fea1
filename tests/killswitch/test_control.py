"""The agents' control socket through the real ASGI application (controlplane.asgi, routing,
the run-token check) and the real channel layer (Redis, as the test command sets REDIS_URL):
a kill reaches a connected agent at once, and a kill nobody announced within a re-read.
Transactional: the consumers read in their own threads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone

from apps.killswitch import consumers, control
from apps.killswitch import services as kills
from apps.killswitch.models import KillSwitch
from apps.runtime import services as runtime
from apps.runtime.models import Run
from controlplane.asgi import application

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..traces.sockets import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds a message may take

# The sockets the running scenario opened.
_opened: list[WebsocketCommunicator] = []


def run_async(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run a scenario, then disconnect every socket it opened, as a server does when the
    client goes away (see tests/traces/test_consumers.py: a consumer left listening on the
    channel layer at the loop's shutdown may take channels_redis down with it)."""

    async def and_disconnect() -> None:
        try:
            await scenario()
        finally:
            while _opened:
                await _opened.pop().disconnect(timeout=WAIT)

    _opened.clear()
    async_to_sync(and_disconnect)()


def control_path(run_id: Any, query: str = "") -> str:
    return f"/ws/agents/runs/{run_id}/control/{query}"


async def connect(run_id: Any, token: str | None, query: str = "") -> WebsocketCommunicator:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    communicator = WebsocketCommunicator(application, control_path(run_id, query), headers=headers)
    _opened.append(communicator)
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected  # refusals are accepted, then closed with a code
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=WAIT)
    assert message["type"] == "websocket.close", message
    return int(message.get("code", 1000))


def test_a_kill_is_pushed_with_who_why_and_which_switch_then_the_socket_closes_1000(
    gated,  # noqa: F811
    org,
) -> None:
    engage = sync_to_async(kills.kill_engage)

    async def scenario() -> None:
        socket = await connect(gated.run.pk, gated.token)
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "state",
            "state": "running",
        }
        kill = await engage(actor=org.owner, scope="run", run=gated.run, reason="Wrong customer")
        loop = asyncio.get_running_loop()
        engaged = loop.time()
        killed = await socket.receive_json_from(timeout=WAIT)
        # Pushed, not found by the re-read: well inside one CONTROL_RECHECK_SECONDS.
        assert loop.time() - engaged < control.CONTROL_RECHECK_SECONDS
        assert killed["type"] == "killed"
        assert (killed["kill_switch"], killed["scope"], killed["target"]) == (
            kill.pk,
            "run",
            str(gated.run.pk)[:8],
        )
        assert (killed["reason"], killed["engaged_by"], killed["automatic"]) == (
            "Wrong customer",
            "alice",
            False,
        )
        assert await closed_with(socket) == 1000

    run_async(scenario)


def test_every_run_the_switch_stopped_is_told(gated, org) -> None:  # noqa: F811
    other, other_token = runtime.run_start(credential=gated.run.credential, task="Second")
    engage = sync_to_async(kills.kill_engage)

    async def scenario() -> None:
        sockets = [await connect(gated.run.pk, gated.token), await connect(other.pk, other_token)]
        for socket in sockets:
            assert (await socket.receive_json_from(timeout=WAIT))["state"] == "running"
        kill = await engage(actor=org.owner, scope="agent", agent=gated.agent, reason="Loop")
        for socket in sockets:
            message = await socket.receive_json_from(timeout=WAIT)
            assert (message["type"], message["kill_switch"], message["scope"]) == (
                "killed",
                kill.pk,
                "agent",
            )
            assert await closed_with(socket) == 1000

    run_async(scenario)


def test_a_kill_nobody_pushed_is_found_by_the_re_read(gated, org) -> None:  # noqa: F811
    """As when the channel layer lost the message: the switch is written, the push never
    comes, and the socket still tells the agent within one re-read."""

    def kill_without_push() -> KillSwitch:
        kill = KillSwitch.objects.create(
            scope="run", run=gated.run, reason="Lost message", engaged_by_name="ada",
            engaged_at=timezone.now(),
        )  # fmt: skip
        Run.objects.filter(pk=gated.run.pk).update(state="killed", ended_at=timezone.now())
        kill.runs.add(gated.run)
        return kill

    async def scenario() -> None:
        socket = await connect(gated.run.pk, gated.token)
        assert (await socket.receive_json_from(timeout=WAIT))["state"] == "running"
        kill = await sync_to_async(kill_without_push)()
        message = await socket.receive_json_from(timeout=control.CONTROL_RECHECK_SECONDS + 2)
        assert (message["type"], message["kill_switch"], message["reason"]) == (
            "killed",
            kill.pk,
            "Lost message",
        )
        assert message["engaged_by"] == "ada"
        assert await closed_with(socket) == 1000

    run_async(scenario)


def test_a_run_that_ends_another_way_is_told_its_state(gated) -> None:  # noqa: F811
    async def scenario() -> None:
        socket = await connect(gated.run.pk, gated.token)
        assert (await socket.receive_json_from(timeout=WAIT))["state"] == "running"
        await sync_to_async(runtime.run_finish)(run=gated.run, state="finished")
        message = await socket.receive_json_from(timeout=control.CONTROL_RECHECK_SECONDS + 2)
        assert message == {"type": "state", "state": "finished"}
        assert await closed_with(socket) == 1000

    run_async(scenario)


def test_a_killed_runs_token_is_told_the_kill_then_closed_4410(gated, org) -> None:  # noqa: F811
    kill = kills.kill_engage(actor=org.owner, scope="run", run=gated.run, reason="Too late")

    async def scenario() -> None:
        socket = await connect(gated.run.pk, gated.token)
        message = await socket.receive_json_from(timeout=WAIT)
        assert (message["type"], message["kill_switch"], message["reason"]) == (
            "killed",
            kill.pk,
            "Too late",
        )
        assert await closed_with(socket) == consumers.KILLED

    run_async(scenario)


def test_no_token_a_bad_one_or_another_runs_is_refused_with_its_code(gated) -> None:  # noqa: F811
    other, other_token = runtime.run_start(credential=gated.run.credential, task="Second")

    async def scenario() -> None:
        for run_id, token, code in (
            (gated.run.pk, None, consumers.NOT_AUTHENTICATED),
            (gated.run.pk, "tth_run_nope", consumers.NOT_AUTHENTICATED),
            (gated.run.pk, gated.secret, consumers.NOT_AUTHENTICATED),  # an agent key
            (gated.run.pk, other_token, consumers.NOT_FOUND),
            (other.pk, gated.token, consumers.NOT_FOUND),
        ):
            socket = await connect(run_id, token)
            assert await closed_with(socket) == code, (run_id, token)

    run_async(scenario)


def test_another_runs_killed_token_is_a_404_not_the_kill(gated, org) -> None:  # noqa: F811
    other, _ = runtime.run_start(credential=gated.run.credential, task="Second")
    kills.kill_engage(actor=org.owner, scope="run", run=gated.run, reason="Stop")

    async def scenario() -> None:
        socket = await connect(other.pk, gated.token)
        assert await closed_with(socket) == consumers.NOT_FOUND

    run_async(scenario)


def test_the_token_may_come_in_the_query_and_a_ping_is_answered(gated) -> None:  # noqa: F811
    async def scenario() -> None:
        socket = await connect(gated.run.pk, None, query=f"?token={gated.token}")
        assert (await socket.receive_json_from(timeout=WAIT))["state"] == "running"
        await socket.send_input({"type": "websocket.receive", "text": '{"type": "ping"}'})
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "pong"}

    run_async(scenario)


def test_a_killed_runs_token_gets_401_with_its_own_code(gated, org, client) -> None:  # noqa: F811
    """What the SDK reads to tell a kill from a bad token, on the API and the decision path."""
    kills.kill_engage(actor=org.owner, scope="run", run=gated.run, reason="Stop")
    headers = {"Authorization": f"Bearer {gated.token}"}
    heartbeat = client.post(f"/api/v1/runtime/runs/{gated.run.pk}/heartbeat", headers=headers)
    with pytest.raises(runtime.RunKilledToken) as refused:
        runtime.run_authenticate(gated.token)

    assert heartbeat.status_code == 401
    assert heartbeat.json()["error"]["code"] == "run_killed"
    assert "killed" in heartbeat.json()["error"]["message"]
    assert refused.value.code == "run_killed" and refused.value.http_status == 401
