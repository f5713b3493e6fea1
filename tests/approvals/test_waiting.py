"""The agent's side of waiting: the long-poll and the websocket, against the real ASGI app.

The app is served by uvicorn in a thread of this process (tests/browser/helpers.py), so the
waits run on a real event loop with the Redis channel layer, and approvals are answered from
this thread through the service, as the console does.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from apps.approvals import services, waiting
from apps.approvals.constants import ApprovalStatus, Verdict
from apps.approvals.models import ApprovalRequest
from apps.runtime import services as runtime

from ..browser.helpers import ASGIServer

pytestmark = pytest.mark.django_db(transaction=True)

REFUND = {
    "action": "tool.invoke",
    "tool": "payments-refund",
    "tool_action": "create",
    "arguments": {"amount": 120, "order": "A-1", "customer": "c@example.com"},
    "reason": "Customer was double charged.",
}


@pytest.fixture
def server(transactional_db: None) -> Iterator[ASGIServer]:
    from apps.common import hotpath
    from apps.traces import receiver

    served = ASGIServer()
    served.start()
    yield served
    served.stop()
    # Their threads hold connections to the test database, which is flushed after the test.
    hotpath.shut_down()
    receiver.shut_down()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ask(server: ASGIServer, token: str) -> str:
    """A critical step, asked over HTTP: the id of the approval request it opened."""
    answer = httpx.post(
        f"{server.url}/api/v1/runtime/decisions/", json=REFUND, headers=bearer(token), timeout=10
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["disposition"] == "ask", body
    assert body["approval"]["status"] == "pending"
    return str(body["approval"]["id"])


def wait(server: ASGIServer, token: str, approval_id: str, **params: Any) -> httpx.Response:
    return httpx.get(
        f"{server.url}/api/v1/approvals/{approval_id}/wait/",
        params=params,
        headers=bearer(token),
        timeout=40,
    )


def approve_both(gated: Any, org: Any, approval_id: str) -> None:
    approval = ApprovalRequest.objects.get(pk=approval_id)
    services.approval_answer(approval=approval, actor=org.approver, verdict=Verdict.APPROVE)
    services.approval_answer(approval=approval, actor=gated.approver2, verdict=Verdict.APPROVE)


def later(seconds: float, action: Any) -> tuple[threading.Thread, dict[str, float]]:
    """Run ``action`` in another thread after ``seconds``; ``done["at"]`` is when it returned
    (its transaction committed)."""
    done: dict[str, float] = {}

    def go() -> None:
        from django.db import connection

        time.sleep(seconds)
        try:
            action()
            done["at"] = time.monotonic()
        finally:
            connection.close()

    thread = threading.Thread(target=go)
    thread.start()
    return thread, done


def test_the_long_poll_answers_as_soon_as_the_last_approval_commits(
    server, gated, org, monkeypatch
) -> None:
    # Re-reads far apart: only the channel layer's message can wake the wait in time.
    monkeypatch.setattr(waiting, "WAIT_RECHECK_SECONDS", 30.0)
    approval_id = ask(server, gated.token)
    thread, done = later(0.5, lambda: approve_both(gated, org, approval_id))
    answer = wait(server, gated.token, approval_id, timeout=20)
    answered = time.monotonic()
    thread.join()

    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert (state["id"], state["status"], state["decided"]) == (approval_id, "approved", True)
    assert (state["approvals"], state["approvals_required"], state["used"]) == (2, 2, False)
    assert answered - done["at"] < 1.0
    assert answer.headers["Cache-Control"] == "no-store"


def test_one_approval_of_two_does_not_end_the_wait(server, gated, org) -> None:
    approval_id = ask(server, gated.token)
    approval = ApprovalRequest.objects.get(pk=approval_id)
    thread, _ = later(
        0.3,
        lambda: services.approval_answer(
            approval=approval, actor=org.approver, verdict=Verdict.APPROVE
        ),
    )
    answer = wait(server, gated.token, approval_id, timeout=2)
    thread.join()

    state = answer.json()
    assert (state["status"], state["decided"], state["approvals"]) == ("pending", False, 1)


def test_the_long_poll_answers_the_pending_state_at_its_timeout(server, gated) -> None:
    approval_id = ask(server, gated.token)
    began = time.monotonic()
    answer = wait(server, gated.token, approval_id, timeout=1)

    assert answer.status_code == 200
    assert time.monotonic() - began >= 1.0
    state = answer.json()
    assert (state["status"], state["decided"], state["approvals"]) == ("pending", False, 0)
    assert state["url"] == f"/approvals/{approval_id}/"


def test_a_rejection_is_answered_with_the_approvers_feedback(server, gated, org) -> None:
    approval_id = ask(server, gated.token)
    approval = ApprovalRequest.objects.get(pk=approval_id)
    thread, _ = later(
        0.3,
        lambda: services.approval_answer(
            approval=approval, actor=org.approver, verdict=Verdict.REJECT, comment="Not this one."
        ),
    )
    state = wait(server, gated.token, approval_id, timeout=20).json()
    thread.join()

    assert (state["status"], state["decided"], state["feedback"]) == (
        "rejected",
        True,
        "Not this one.",
    )


def test_a_request_past_its_deadline_is_answered_expired_not_rejected(server, gated) -> None:
    approval_id = ask(server, gated.token)
    ApprovalRequest.objects.filter(pk=approval_id).update(expires_at=time_ago())

    state = wait(server, gated.token, approval_id, timeout=5).json()

    assert (state["status"], state["decided"]) == ("expired", True)
    assert ApprovalRequest.objects.get(pk=approval_id).status == ApprovalStatus.EXPIRED


def time_ago() -> Any:
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(seconds=1)


def test_the_state_without_waiting(server, gated) -> None:
    approval_id = ask(server, gated.token)
    answer = httpx.get(
        f"{server.url}/api/v1/approvals/{approval_id}/", headers=bearer(gated.token), timeout=10
    )

    assert answer.status_code == 200
    assert answer.json()["status"] == "pending"


def test_another_runs_token_gets_a_404(server, gated) -> None:
    approval_id = ask(server, gated.token)
    _other, other_token = runtime.run_start(credential=gated.run.credential, task="Another run")

    waited = wait(server, other_token, approval_id, timeout=1)
    read = httpx.get(
        f"{server.url}/api/v1/approvals/{approval_id}/", headers=bearer(other_token), timeout=10
    )

    for answer in (waited, read):
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"
    unknown = wait(server, gated.token, "00000000-0000-4000-8000-000000000000", timeout=1)
    assert unknown.status_code == 404


def test_no_run_token_is_a_401_in_the_error_shape(server, gated) -> None:
    approval_id = ask(server, gated.token)
    for headers in ({}, {"Authorization": "Bearer tth_run_nope"}, bearer("tth_agent_x")):
        answer = httpx.get(
            f"{server.url}/api/v1/approvals/{approval_id}/wait/?timeout=1",
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 401, headers
        assert set(answer.json()["error"]) == {"code", "message", "details"}
        assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("timeout", ["0", "0.5", "31", "abc", "nan", "inf", "-3"])
def test_a_timeout_outside_1_to_30_seconds_is_a_400(server, gated, timeout) -> None:
    approval_id = ask(server, gated.token)
    answer = wait(server, gated.token, approval_id, timeout=timeout)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid"
    assert "between 1 and 30 seconds" in error["message"]
    assert error["details"] == {"timeout": ["Wait between 1 and 30 seconds."]}


def test_the_wait_answers_from_the_re_read_when_the_channel_layer_is_unreachable(
    server, gated, org, settings
) -> None:
    approval_id = ask(server, gated.token)
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": f"redis://127.0.0.1:{dead}/0"}]},
        }
    }
    thread, done = later(0.5, lambda: approve_both(gated, org, approval_id))
    answer = wait(server, gated.token, approval_id, timeout=20)
    answered = time.monotonic()
    thread.join()

    assert answer.json()["status"] == "approved"
    # Within one re-read (WAIT_RECHECK_SECONDS) of the commit, and a little for the read itself.
    assert answered - done["at"] < waiting.WAIT_RECHECK_SECONDS + 0.5


# --- the websocket ------------------------------------------------------------------------------


def socket_url(server: ASGIServer, approval_id: str, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/ws/agents/approvals/{approval_id}/{query}"


def follow(server: ASGIServer, approval_id: str, token: str, **options: Any) -> Any:
    return connect(
        socket_url(server, approval_id, options.pop("query", "")),
        additional_headers=bearer(token) if token else None,
        origin=options.pop("origin", server.url),
        proxy=None,
        open_timeout=10,
        **options,
    )


def test_the_websocket_sends_the_state_at_once_then_each_change_and_closes_after_the_last(
    server, gated, org
) -> None:
    approval_id = ask(server, gated.token)
    with follow(server, approval_id, gated.token) as ws:
        first = json.loads(ws.recv(timeout=5))
        assert (first["type"], first["id"], first["status"], first["approvals"]) == (
            "approval",
            approval_id,
            "pending",
            0,
        )
        thread, _ = later(0.2, lambda: approve_both(gated, org, approval_id))
        received = []
        while not received or not received[-1]["decided"]:
            received.append(json.loads(ws.recv(timeout=10)))
        thread.join()
        with pytest.raises(Exception) as closed:
            ws.recv(timeout=5)
    assert received[-1]["status"] == "approved" and received[-1]["approvals"] == 2
    assert [m["type"] for m in received] == ["approval"] * len(received)
    assert closed.value.rcvd.code == 1000  # type: ignore[attr-defined]


def test_the_websocket_takes_the_token_from_the_query_too(server, gated) -> None:
    approval_id = ask(server, gated.token)
    with follow(server, approval_id, "", query=f"?token={gated.token}") as ws:
        assert json.loads(ws.recv(timeout=5))["status"] == "pending"


def test_the_websocket_closes_4401_without_a_run_token_and_4404_for_another_runs_request(
    server, gated
) -> None:
    approval_id = ask(server, gated.token)
    _other, other_token = runtime.run_start(credential=gated.run.credential, task="Another run")
    for token, code in (("tth_run_nope", 4401), ("", 4401), (other_token, 4404)):
        with follow(server, approval_id, token) as ws, pytest.raises(Exception) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == code, token  # type: ignore[attr-defined]


def test_an_agent_socket_needs_no_origin_and_a_console_socket_does(server, gated) -> None:
    """An SDK sends no Origin: its socket is authenticated by the run token alone. A console
    socket (session cookie) still goes through AllowedHostsOriginValidator."""
    approval_id = ask(server, gated.token)
    with follow(server, approval_id, gated.token, origin=None) as ws:
        assert json.loads(ws.recv(timeout=5))["status"] == "pending"
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{server.port}/ws/approvals/inbox/", origin=None, proxy=None)
    assert refused.value.response.status_code == 403
