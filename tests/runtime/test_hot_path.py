"""The decision endpoint under ASGI: answered in a long-lived hot-path thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connection
from django.test import AsyncClient

from apps.common import hotpath
from apps.common.hotpath import _pool

from .conftest import start_run

DECIDE = "/api/v1/runtime/decisions/"


@pytest.fixture(autouse=True)
def hot_threads_let_go_of_the_test_database():
    yield
    hotpath.shut_down()  # else their connections keep the test database from being dropped


BODY = {"action": "tool.invoke", "tool": "crm-lookup", "tool_action": "read"}


def ask(client: AsyncClient, token: str, customer: str):
    return client.post(
        DECIDE,
        {**BODY, "arguments": {"customer_id": customer}},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.django_db(transaction=True)  # the hot thread has its own connection
def test_an_asgi_decision_is_answered_in_a_hot_path_thread_that_outlives_the_request(setup):
    _, token = start_run(setup)
    names = []

    async def main() -> list[int]:
        client = AsyncClient()
        answers = [await ask(client, token, f"c-{i}") for i in range(3)]
        names.extend(_pool().submit(lambda: threading.current_thread().name).result() for _ in "x")
        return [a.status_code for a in answers]

    assert asyncio.run(main()) == [200, 200, 200]
    assert names[0].startswith("tether-hot")
    assert setup.agent.decisions.filter(disposition="allow").count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_hot_thread_whose_connection_broke_replaces_it_on_the_next_request(setup):
    _, token = start_run(setup)

    def break_connections() -> None:
        connection.ensure_connection()
        connection.connection.close()  # as a PostgreSQL restart would

    async def main() -> list[int]:
        client = AsyncClient()
        first = await ask(client, token, "c-1")
        for future in [_pool().submit(break_connections) for _ in range(8)]:
            future.result()
        after = [await ask(client, token, f"c-{i}") for i in range(2, 12)]
        return [first.status_code] + [a.status_code for a in after]

    codes = asyncio.run(main())
    # A request that meets a dead connection is a 503 (retryable, never a 500 and never an
    # allow); its thread then opens a new connection, so the run goes on.
    assert codes[0] == 200 and set(codes) <= {200, 503}
    assert codes.count(503) <= 4 and codes[-5:] == [200] * 5


def test_under_the_sync_test_client_the_view_runs_in_the_calling_thread(setup, client):
    _, token = start_run(setup)
    answer = client.post(
        DECIDE,
        {**BODY, "arguments": {"customer_id": "c-1"}},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    # Inside the test's transaction: only the calling thread's connection can see the run.
    assert answer.status_code == 200 and answer.json()["disposition"] == "allow"
