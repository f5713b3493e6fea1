"""``AsyncClient`` has the same surface and the same guarantees as ``Client``."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
import tether
from tether import _base

from .fakes import AGENT_KEY, RUN_ID, RUN_TOKEN, URL, FakeTether, decision, error

CONNECT_ERROR = httpx.ConnectError("connection refused")


def make_client(fake: FakeTether, sleeps: list[float], **options) -> tether.AsyncClient:
    client = tether.AsyncClient(URL, AGENT_KEY, transport=httpx.MockTransport(fake), **options)

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client._sleep = sleep
    return client


def test_async_run_starts_checks_and_finishes() -> None:
    fake, sleeps = FakeTether(), []
    fake.queue(
        "decisions/",
        httpx.Response(200, json=decision("allow")),
        httpx.Response(200, json=decision("modify", arguments={"id": "c-0"})),
        httpx.Response(200, json=decision("modify", model="small-model")),
    )

    async def main() -> tuple[tether.Decision, ...]:
        async with make_client(fake, sleeps) as client, client.run("Triage") as run:
            assert (run.id, run.token, run.failure_posture) == (RUN_ID, RUN_TOKEN, "fail_closed")
            assert tether.active_run() is run
            allowed = await run.check_tool("crm-lookup", {"id": "c-42"}, action="read")
            modified = await run.check_tool("crm-lookup", {"id": "c-42"}, action="read")
            model = await run.check_model("large-model", 100, 10)
            await run.check_memory("notes", write=True)
            await run.check_delegate("fraud-screen")
            budgets = await run.report_usage(model, 90, 9, cost_usd=0.01)
            assert budgets == {}
            run.outcome = "done"
            return allowed, modified, model

    allowed, modified, model = asyncio.run(main())
    assert allowed.arguments == {"id": "c-42"}
    assert modified.arguments == {"id": "c-0"}
    assert model.model == "small-model"
    assert fake.sent("finish") == [{"state": "finished", "outcome": "done"}]
    assert fake.sent("usage/") == [
        {"decision": 7, "input_tokens": 90, "output_tokens": 9, "cost_usd": 0.01}
    ]


def test_async_run_fails_with_the_exception_class_name() -> None:
    fake = FakeTether()

    async def main() -> None:
        async with make_client(fake, []).run("Triage"):
            raise ValueError("bad claim")

    with pytest.raises(ValueError):
        asyncio.run(main())
    assert fake.sent("finish") == [{"state": "failed", "outcome": "ValueError"}]


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (decision("deny"), tether.Denied),
        (decision("ask", reasons=["approval_required"]), tether.ApprovalRequired),
        (decision("defer"), tether.Deferred),
        (decision("deny", reasons=["run_not_running"]), tether.RunEnded),
    ],
)
def test_async_checks_raise_for_what_is_not_allowed(answer, raised) -> None:
    fake = FakeTether()
    fake.queue("decisions/", httpx.Response(200, json=answer))

    async def main() -> None:
        async with make_client(fake, [], defer_timeout=0).run("Triage") as run:
            await run.check_tool("payments-refund", {"amount": 1})

    with pytest.raises(raised):
        asyncio.run(main())


def test_async_retries_with_backoff_then_fails_closed() -> None:
    fake, sleeps = FakeTether(), []
    fake.queue(
        "decisions/",
        CONNECT_ERROR,
        httpx.Response(503),
        httpx.Response(200, json=decision("allow")),
        *[CONNECT_ERROR] * 4,
    )

    async def main() -> tether.Decision:
        async with make_client(fake, sleeps, retries=3).run("Triage") as run:
            first = await run.check_tool("crm-lookup", {"id": "c-42"})
            with pytest.raises(tether.TetherUnavailable) as caught:
                await run.check_tool("crm-lookup", {"id": "c-42"})
            assert caught.value.reasons == ("store_unavailable",)
            return first

    assert asyncio.run(main()).disposition == "allow"
    assert len(fake.sent("decisions/")) == 3 + 4
    assert len(sleeps) == 2 + 3


def test_async_client_errors_are_not_retried() -> None:
    fake, sleeps = FakeTether(), []
    fake.queue("decisions/", error(403, "forbidden"))

    async def main() -> None:
        async with make_client(fake, sleeps).run("Triage") as run:
            await run.check_tool("crm-lookup", {"id": "c-42"})

    with pytest.raises(tether.Forbidden):
        asyncio.run(main())
    assert sleeps == []


def test_async_postures_match_the_sync_ones(caplog) -> None:
    fake = FakeTether(posture="read_only")
    fake.queue("decisions/", CONNECT_ERROR, CONNECT_ERROR)

    async def main() -> tether.Decision:
        async with make_client(fake, [], retries=0).run("Triage") as run:
            read = await run.check_tool("crm-lookup", {"id": "c-42"}, action="search")
            with pytest.raises(tether.TetherUnavailable):
                await run.check_tool("crm-update", {"id": "c-42"}, action="delete")
            return read

    with caplog.at_level(logging.WARNING, logger="tether"):
        read = asyncio.run(main())
    assert read.disposition == "allow"
    assert read.local
    assert "read_only posture" in caplog.text


def test_async_heartbeats_run_until_the_block_ends(monkeypatch) -> None:
    monkeypatch.setattr(_base, "MIN_HEARTBEAT_SECONDS", 0.01)
    fake = FakeTether(ttl_seconds=0)

    async def main() -> None:
        async with make_client(fake, []).run("Triage"):
            for _ in range(500):
                if len(fake.sent("heartbeat")) >= 3:
                    break
                await asyncio.sleep(0.01)
        count = len(fake.sent("heartbeat"))
        await asyncio.sleep(0.05)
        assert len(fake.sent("heartbeat")) == count  # stopped with the block

    asyncio.run(main())
    assert len(fake.sent("heartbeat")) >= 3


def test_async_heartbeat_told_of_a_kill_ends_the_run(monkeypatch) -> None:
    monkeypatch.setattr(_base, "MIN_HEARTBEAT_SECONDS", 0.01)
    fake = FakeTether(ttl_seconds=0)
    fake.queue("heartbeat", error(409, "run_not_running", state="killed"))

    async def main() -> None:
        async with make_client(fake, []).run("Triage") as run:
            for _ in range(500):
                if run.ended:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(tether.RunEnded):
                await run.check_tool("crm-lookup", {"id": "c-42"})

    asyncio.run(main())
    assert fake.sent("decisions/") == []
    assert fake.sent("finish") == []


def test_an_async_defer_is_waited_out_with_the_same_idempotency_key() -> None:
    fake, sleeps = FakeTether(), []
    fake.queue("decisions/", httpx.Response(200, json=decision("defer", retry_after=4)))

    async def main() -> str:
        async with make_client(fake, sleeps).run("Triage") as run:
            return (await run.check_tool("crm-lookup", {"id": "c-1"})).disposition

    assert asyncio.run(main()) == "allow"
    assert sleeps == [4.0]
    keys = {
        r.headers["Idempotency-Key"] for r in fake.requests if r.url.path.endswith("decisions/")
    }
    assert len(keys) == 1
