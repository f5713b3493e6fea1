"""``governed_tool``: the body runs only when Tether allows the call, with Tether's arguments."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import httpx
import pytest
import tether

from .fakes import AGENT_KEY, URL, FakeTether, decision


@pytest.fixture
def fake() -> FakeTether:
    return FakeTether()


@pytest.fixture
def client(fake: FakeTether) -> tether.Client:
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake), defer_timeout=0)
    client._sleep = lambda seconds: None
    return client


@pytest.fixture
def async_client(fake: FakeTether) -> tether.AsyncClient:
    client = tether.AsyncClient(
        URL, AGENT_KEY, transport=httpx.MockTransport(fake), defer_timeout=0
    )

    async def no_wait(seconds: float) -> None:
        return None

    client._sleep = no_wait
    return client


def deny() -> httpx.Response:
    return httpx.Response(200, json=decision("deny", reasons=["tool_not_granted"]))


def test_an_allowed_call_runs_the_body_and_sends_the_arguments_by_name(client, fake) -> None:
    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str, fields: list[str] | None = None) -> str:
        return f"{customer_id}:{fields}"

    with client.run("Triage"):
        assert crm_lookup("c-42", fields=["name"]) == "c-42:['name']"
    assert fake.sent("decisions/") == [
        {
            "action": "tool.invoke",
            "tool": "crm-lookup",
            "tool_action": "read",
            "arguments": {"customer_id": "c-42", "fields": ["name"]},
        }
    ]


def test_a_denied_call_never_runs_the_body(client, fake) -> None:
    ran = []

    @client.governed_tool("payments-refund")
    def refund(amount: int) -> None:
        ran.append(amount)

    fake.queue("decisions/", deny())
    with client.run("Triage"), pytest.raises(tether.Denied):
        refund(5000)
    assert ran == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json=decision("ask", reasons=["approval_required"])),
        httpx.Response(200, json=decision("defer", reasons=["rate_limited"])),
        httpx.Response(401, json={"error": {"code": "not_authenticated", "message": "Expired."}}),
        httpx.Response(200, text="not json"),
    ],
    ids=["ask", "defer", "unauthorized", "garbled"],
)
def test_no_answer_but_allow_or_modify_runs_the_body(client, fake, answer) -> None:
    ran = []

    @client.governed_tool("payments-refund")
    def refund(amount: int) -> None:
        ran.append(amount)

    fake.queue("decisions/", answer)
    with client.run("Triage"), pytest.raises(tether.TetherError):
        refund(5000)
    assert ran == []


def test_an_unreachable_tether_never_runs_the_body_when_failing_closed(client, fake) -> None:
    ran = []

    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> None:
        ran.append(customer_id)

    fake.queue("decisions/", *[httpx.ConnectError("refused")] * 4)
    with client.run("Triage"), pytest.raises(tether.TetherUnavailable):
        crm_lookup("c-42")
    assert ran == []


def test_a_modified_call_runs_the_body_with_the_modified_arguments(client, fake) -> None:
    seen: list[dict[str, Any]] = []

    @client.governed_tool("crm-update", action="update")
    def crm_update(customer_id: str, note: str, *, notify: bool = False) -> None:
        seen.append({"customer_id": customer_id, "note": note, "notify": notify})

    fake.queue(
        "decisions/",
        httpx.Response(
            200,
            json=decision(
                "modify",
                reasons=["policy_permitted"],
                arguments={"customer_id": "c-42", "note": "[redacted]", "notify": False},
            ),
        ),
    )
    with client.run("Triage"):
        crm_update("c-42", "SSN 123-45-6789", notify=True)
    assert seen == [{"customer_id": "c-42", "note": "[redacted]", "notify": False}]


def test_modified_arguments_the_function_cannot_take_are_refused(client, fake) -> None:
    ran = []

    @client.governed_tool("crm-update")
    def crm_update(customer_id: str) -> None:
        ran.append(customer_id)

    fake.queue(
        "decisions/",
        httpx.Response(200, json=decision("modify", arguments={"customer_id": "x", "evil": 1})),
    )
    with client.run("Triage"), pytest.raises(tether.ProtocolError, match="evil"):
        crm_update("c-42")
    assert ran == []


def test_variadic_arguments_are_sent_flat_and_modified_back(client, fake) -> None:
    seen = []

    @client.governed_tool("search")
    def search(query: str, *terms: str, **filters: Any) -> None:
        seen.append((query, terms, filters))

    fake.queue(
        "decisions/",
        httpx.Response(
            200,
            json=decision(
                "modify", arguments={"query": "q", "terms": ["a"], "region": "eu", "limit": 5}
            ),
        ),
    )
    with client.run("Triage"):
        search("q", "a", "b", region="us")
    assert fake.sent("decisions/")[0]["arguments"] == {
        "query": "q",
        "terms": ["a", "b"],
        "region": "us",
    }
    assert seen == [("q", ("a",), {"region": "eu", "limit": 5})]


def test_a_governed_method_does_not_send_self(client, fake) -> None:
    class Crm:
        @client.governed_tool("crm-lookup", action="read")
        def lookup(self, customer_id: str) -> str:
            return customer_id

    with client.run("Triage"):
        assert Crm().lookup("c-42") == "c-42"
    assert fake.sent("decisions/")[0]["arguments"] == {"customer_id": "c-42"}


def test_a_governed_tool_outside_a_run_raises_no_active_run(client, fake) -> None:
    ran = []

    @client.governed_tool("crm-lookup")
    def crm_lookup(customer_id: str) -> None:
        ran.append(customer_id)

    with pytest.raises(tether.NoActiveRun, match="crm-lookup"):
        crm_lookup("c-42")
    assert ran == []
    assert fake.requests == []


def test_the_wrapper_keeps_the_functions_name_doc_and_signature(client) -> None:
    def crm_lookup(customer_id: str, limit: int = 5) -> str:
        """Look a customer up."""
        return customer_id

    governed = client.governed_tool("crm-lookup")(crm_lookup)
    assert governed.__name__ == "crm_lookup"
    assert governed.__doc__ == "Look a customer up."
    assert inspect.signature(governed) == inspect.signature(crm_lookup)


def test_an_async_tool_in_a_sync_run_is_governed(client, fake) -> None:
    ran = []

    @client.governed_tool("crm-lookup", action="read")
    async def crm_lookup(customer_id: str) -> str:
        ran.append(customer_id)
        return customer_id

    assert inspect.iscoroutinefunction(crm_lookup)
    fake.queue("decisions/", httpx.Response(200, json=decision("allow")), deny())
    with client.run("Triage"):
        assert asyncio.run(crm_lookup("c-42")) == "c-42"
        with pytest.raises(tether.Denied):
            asyncio.run(crm_lookup("c-43"))
    assert ran == ["c-42"]


def test_an_async_tool_in_an_async_run_is_governed(async_client, fake) -> None:
    ran = []

    @async_client.governed_tool("crm-lookup", action="read")
    async def crm_lookup(customer_id: str) -> str:
        ran.append(customer_id)
        return customer_id

    async def main() -> None:
        fake.queue("decisions/", httpx.Response(200, json=decision("allow")), deny())
        async with async_client.run("Triage"):
            assert await crm_lookup("c-42") == "c-42"
            with pytest.raises(tether.Denied):
                await crm_lookup("c-43")

    asyncio.run(main())
    assert ran == ["c-42"]


def test_a_sync_tool_in_an_async_run_asks_from_a_worker_thread(async_client, fake) -> None:
    ran = []

    @async_client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> str:
        ran.append(customer_id)
        return customer_id

    async def main() -> None:
        fake.queue("decisions/", httpx.Response(200, json=decision("allow")), deny())
        async with async_client.run("Triage"):
            assert await asyncio.to_thread(crm_lookup, "c-42") == "c-42"
            with pytest.raises(tether.Denied):
                await asyncio.to_thread(crm_lookup, "c-43")
            # On the loop's own thread the wait would deadlock: refused, body not run.
            with pytest.raises(tether.TetherError, match="event loop"):
                crm_lookup("c-44")

    asyncio.run(main())
    assert ran == ["c-42"]
    assert len(fake.sent("decisions/")) == 2


def test_current_run_is_the_run_of_the_enclosing_block(client, async_client) -> None:
    with pytest.raises(tether.NoActiveRun):
        client.current_run()
    with client.run("Triage") as run:
        assert client.current_run() is run
        with pytest.raises(tether.NoActiveRun):
            async_client.current_run()  # a sync run is not an async one

    async def main() -> None:
        async with async_client.run("Triage") as run:
            assert async_client.current_run() is run

    asyncio.run(main())
