"""The decision endpoint as ASGI serves it (apps/runtime/api/asgi.py): the real application,
through httpx's ASGI transport, answered in hot-path threads with their own connections."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django.db import connection

from apps.common import hotpath
from apps.runtime import services
from apps.runtime.models import Decision
from controlplane.asgi import application

from .conftest import start_run

pytestmark = pytest.mark.django_db(transaction=True)  # hot threads use their own connections

DECIDE = "/api/v1/runtime/decisions/"
LOOKUP = {"action": "tool.invoke", "tool": "crm-lookup", "tool_action": "read"}


@pytest.fixture(autouse=True)
def hot_threads_let_go_of_the_test_database():
    yield
    hotpath.shut_down()  # else their connections keep the test database from being dropped


def call(*requests: dict[str, Any], scheme: str = "http") -> list[httpx.Response]:
    """Send the requests in order to the ASGI application; their responses."""

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=application)
        base = f"{scheme}://127.0.0.1"
        async with httpx.AsyncClient(transport=transport, base_url=base) as http:
            return [await http.request(**r) for r in requests]

    return asyncio.run(main())


def ask(token: str, body: Any = None, **headers: str) -> dict[str, Any]:
    content = json.dumps(
        body if body is not None else {**LOOKUP, "arguments": {"customer_id": "c"}}
    )
    return {
        "method": "POST",
        "url": DECIDE,
        "content": content,
        "headers": {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **headers,
        },
    }


def test_an_allowed_step_is_answered_and_recorded_under_the_request_id(setup):
    _, token = start_run(setup)
    [answer] = call(ask(token, **{"X-Request-ID": "agent-req-0001"}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["disposition"] == "allow"
    assert answer.headers["x-request-id"] == "agent-req-0001"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert Decision.objects.get(pk=answer.json()["id"]).request_id == "agent-req-0001"


def test_it_answers_as_the_drf_view_does(setup, client):
    """The same JSON for the same step, whichever adapter serves the path."""
    _, token = start_run(setup)
    bad = {**LOOKUP, "arguments": {"customer_id": 7}}
    lean = [r.json() for r in call(ask(token), ask(token, bad))]
    drf = [
        client.post(
            DECIDE, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        ).json()
        for body in ({**LOOKUP, "arguments": {"customer_id": "c"}}, bad)
    ]
    for a, b in zip(lean, drf, strict=True):
        assert {k: v for k, v in a.items() if k not in ("id", "created_at", "budgets")} == {
            k: v for k, v in b.items() if k not in ("id", "created_at", "budgets")
        }
    assert lean[1]["reasons"] == ["arguments_invalid"]
    assert "customer_id" in lean[1]["reasoning"]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"headers": {"Content-Type": "application/json"}}, 401, "not_authenticated"),
        ({"headers": {"Authorization": "Bearer tth_run_nope", "Content-Type": "application/json"}}, 401, "not_authenticated"),
        ({"method": "GET"}, 405, "method_not_allowed"),
        ({"content_type": "text/plain"}, 415, "unsupported_media_type"),
        ({"content": "{not json"}, 400, "parse_error"),
        ({"content": json.dumps({**LOOKUP, "surprise": 1})}, 400, "invalid"),
        ({"content": json.dumps({"action": "tool.invoke"})}, 400, "invalid"),
        ({"content": "x" * (3 * 1024 * 1024)}, 413, "payload_too_large"),
        ({"host": "evil.example.com"}, 400, "bad_request"),
        ({"idempotency": "has spaces"}, 400, "invalid"),
    ],
    ids=["no-token", "bad-token", "get", "text", "malformed", "unknown-field", "no-tool", "huge", "host", "idem-key"],
)  # fmt: skip
def test_bad_requests_get_a_4xx_in_the_api_error_shape(setup, change, status, code):
    _, token = start_run(setup)
    request = ask(token)
    if "headers" in change:
        request["headers"] = change["headers"]
    if "method" in change:
        request["method"] = change["method"]
    if "content_type" in change:
        request["headers"]["Content-Type"] = change["content_type"]
    if "content" in change:
        request["content"] = change["content"]
    if "host" in change:
        request["headers"]["Host"] = change["host"]
    if "idempotency" in change:
        request["headers"]["Idempotency-Key"] = change["idempotency"]
    [answer] = call(request)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_run_that_ended_after_it_was_cached_is_never_answered_allow(setup):
    run, token = start_run(setup)
    [first] = call(ask(token))  # the run is now cached in this process
    services.run_finish(run=run, state="finished")
    [after, later] = call(ask(token), ask(token))
    assert first.json()["disposition"] == "allow"
    # Recorded only while live: the stale cached run got a recorded deny, then a 401.
    assert (after.status_code, after.json()["reasons"]) == (200, ["run_not_running"])
    assert later.status_code == 401
    assert not Decision.objects.filter(run=run, disposition="allow").exclude(pk=first.json()["id"])


def test_a_hot_thread_whose_connection_broke_fails_closed_once_then_recovers(setup, settings):
    settings.HOT_PATH_THREADS = 1  # one thread, so the request that meets the dead link is known
    hotpath.shut_down()
    _, token = start_run(setup)

    def break_connection() -> None:
        connection.ensure_connection()
        connection.connection.close()  # as a PostgreSQL restart would

    [before] = call(ask(token))
    hotpath.HOT_PATH.pool().submit(break_connection).result()
    # Distinct arguments: five identical calls would open the circuit breaker.
    other = [{**LOOKUP, "arguments": {"customer_id": f"c-{i}"}} for i in range(5)]
    met, *after = call(*[ask(token, body) for body in other])
    assert before.json()["disposition"] == "allow"
    # The request that meets the dead connection fails closed: a retryable 503, or a deny that
    # could not be recorded; never a 500, never an allow. Then the thread has a new connection.
    assert met.status_code == 503 or met.json()["disposition"] == "deny", met.text
    assert [a.json()["disposition"] for a in after] == ["allow"] * 4


def test_with_https_required_plain_http_is_refused_and_https_answered(setup, settings):
    settings.SECURE_SSL_REDIRECT = True
    _, token = start_run(setup)
    [plain] = call(ask(token))
    [secure] = call(ask(token), scheme="https")
    assert (plain.status_code, plain.json()["error"]["code"]) == (403, "https_required")
    assert secure.status_code == 200 and secure.json()["disposition"] == "allow"
