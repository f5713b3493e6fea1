"""The live views' websockets through the real ASGI application (controlplane.asgi: origin
check, session authentication, routing) and the real channel layer (Redis, as the test
command sets REDIS_URL). Transactional: the consumers read in their own threads."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from apps.accounts.models import RoleAssignment
from apps.runtime import services as runtime
from apps.traces import consumers, live
from apps.traces.feeds import Cursor
from controlplane.asgi import application

from .runs import decide, make_runner, post, span, start_run
from .sockets import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds a message may take; the tick is half a second


@pytest.fixture(autouse=True)
def clean_live_state():
    cache.clear()  # interest keys of earlier tests
    live.forget_quiet()


@pytest.fixture
def runner(org):
    return make_runner(org.owner, org.claims, "claims-triage")


def session_of(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return [(b"cookie", cookie), (b"origin", b"http://testserver")]


# The sockets the running scenario opened.
_opened: list[WebsocketCommunicator] = []


def run_async(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run a scenario, then disconnect every socket it left open, as a server does when the
    browser goes away. A consumer whose socket the server closed still listens on the channel
    layer until that disconnect; left to the event loop's shutdown, all of them would be
    cancelled at once, and channels_redis does not always survive that."""

    async def and_disconnect() -> None:
        try:
            await scenario()
        finally:
            while _opened:
                await _opened.pop().disconnect(timeout=WAIT)

    _opened.clear()
    async_to_sync(and_disconnect)()


async def connect(path: str, user: Any = None) -> WebsocketCommunicator:
    headers = (
        await sync_to_async(session_of)(user)
        if user is not None
        else [(b"origin", b"http://testserver")]
    )
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _opened.append(communicator)
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    return communicator


async def closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=WAIT)
    assert message["type"] == "websocket.close"
    return int(message["code"])


async def next_update(communicator: WebsocketCommunicator, has: str) -> dict:
    """The next message whose steps include a row containing ``has``."""
    while True:
        message = await communicator.receive_json_from(timeout=WAIT)
        if any(has in step["html"] for step in message.get("steps", [])):
            return message


def test_a_socket_without_a_session_is_closed_4401(runner) -> None:
    run = start_run(runner)

    async def scenario() -> None:
        communicator = await connect(live.run_socket_path(run.pk))
        assert await closed_with(communicator) == consumers.NOT_SIGNED_IN

    run_async(scenario)


def test_someone_who_may_not_see_the_run_is_closed_4404(org, runner) -> None:
    run = start_run(runner)

    async def scenario() -> None:
        for user in (org.outsider, org.other_owner):
            communicator = await connect(live.run_socket_path(run.pk), user)
            assert await closed_with(communicator) == consumers.NOT_FOUND
        communicator = await connect(f"{live.run_socket_path(run.pk)}?cursor=nonsense", org.owner)
        assert await closed_with(communicator) == consumers.BAD_CURSOR

    run_async(scenario)


def test_a_foreign_origin_is_refused(org, runner) -> None:
    run = start_run(runner)

    async def scenario() -> None:
        headers = [(b"origin", b"https://evil.example")]
        communicator = WebsocketCommunicator(
            application, live.run_socket_path(run.pk), headers=headers
        )
        connected, _ = await communicator.connect(timeout=WAIT)
        assert not connected

    run_async(scenario)


def test_an_open_run_socket_receives_spans_and_decisions_as_they_are_stored(org, runner) -> None:
    run = start_run(runner)
    trace_id = os.urandom(16)

    async def scenario() -> None:
        path = f"{live.run_socket_path(run.pk)}?cursor={Cursor().encode()}"
        communicator = await connect(path, org.approver)
        first = await communicator.receive_json_from(timeout=WAIT)
        assert first["type"] == "update" and 'id="run-summary"' in first["summary"]
        # The consumer said it watches the run: the ingest side will wake it.
        await wait_until(lambda: cache.get(live.interest_key(live.run_group(run.pk))) == 1)

        # Stored through the ingest service; its commit notifies the run's group at once.
        await sync_to_async(post)(
            runner,
            span("chat gpt-4o", start=timezone.now(), trace_id=trace_id,
                 gen_ai__request__model="gpt-4o", tether__run__id=str(run.pk)),
        )  # fmt: skip
        message = await next_update(communicator, "chat gpt-4o")
        assert message["cursor"] and Cursor.decode(message["cursor"]).spans.candidate > 0

        # Decisions are found by the consumer's tick (the decision path is left alone).
        await sync_to_async(decide)(run, "deny", target="payment-refund")
        message = await next_update(communicator, "payment-refund")
        assert "1 denied" in message["summary"]

        await sync_to_async(runtime.run_finish)(run=run, state="finished", outcome="done")
        while True:
            message = await communicator.receive_json_from(timeout=WAIT)
            if message.get("state") == "finished":
                break
        assert "Finished" in message["summary"]
        await communicator.disconnect()

    run_async(scenario)


def test_a_socket_is_closed_4403_when_its_user_loses_the_role(org, runner, monkeypatch) -> None:
    monkeypatch.setattr(consumers, "LIVE_RECHECK_SECONDS", 0.0)  # re-check on every tick
    run = start_run(runner)

    async def scenario() -> None:
        communicator = await connect(live.run_socket_path(run.pk), org.approver)
        await communicator.receive_json_from(timeout=WAIT)
        await sync_to_async(lambda: RoleAssignment.objects.filter(user=org.approver).delete())()
        while True:
            message = await communicator.receive_output(timeout=WAIT)
            if message["type"] == "websocket.close":
                assert message["code"] == consumers.NO_LONGER_PERMITTED
                return

    run_async(scenario)


def test_the_fleet_socket_sends_the_active_runs_as_they_change(org, runner) -> None:
    async def scenario() -> None:
        communicator = await connect(live.FLEET_SOCKET_PATH, org.approver)
        first = await communicator.receive_json_from(timeout=WAIT)
        assert first == {"type": "fleet", "rows": [], "count": 0, "running": 0}
        run = await sync_to_async(start_run)(runner, "Claim 9: triage")
        message = await communicator.receive_json_from(timeout=WAIT)
        assert [r["id"] for r in message["rows"]] == [f"fleet-run-{run.pk}"]
        assert message["running"] == 1
        await communicator.disconnect()
        outsider = await connect(live.FLEET_SOCKET_PATH, org.outsider)
        assert await closed_with(outsider) == consumers.NOT_FOUND

    run_async(scenario)


async def wait_until(check: Callable[[], bool]) -> None:
    """Poll a condition the consumer reaches on its own (a setup step, not an assertion)."""
    for _ in range(200):
        if await sync_to_async(check)():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the consumer never got there")
