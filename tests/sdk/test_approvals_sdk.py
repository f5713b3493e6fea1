"""The SDK waiting for people: a gated tool blocks until approved, runs once, and says why not.

Against the whole ASGI application served by uvicorn in a thread (tests/browser/helpers.py):
the long-poll is an async view, and answers reach it through the Redis channel layer. The
approvers answer through the service from this thread, as the console does. The last tests
use the scripted fake (tests/sdk/fakes.py) for what a live Tether cannot be made to say.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import tether
from django.utils import timezone

from apps.approvals import services as approvals
from apps.approvals.constants import ApprovalStatus, Verdict
from apps.approvals.models import ApprovalRequest
from apps.common.errors import ApplicationError, NotPermitted

from ..browser.helpers import ASGIServer
from ..factories import make_tool, make_user
from .fakes import AGENT_KEY, URL, FakeTether, decision

APPROVAL_ID = "0f6b7f5e-8a55-4c1e-9d43-6f4b0b7c2a10"


@dataclass
class GatedAgent:
    url: str
    key: str
    agent: Any
    approvers: tuple[Any, Any]  # two distinct approvers in the agent's department
    owner: Any


@pytest.fixture
def gated_agent(org: Any, fresh_runtime: None, transactional_db: None) -> Iterator[GatedAgent]:
    from apps.accounts.permissions import forget_scope
    from apps.accounts.services import role_assign
    from apps.approvals.gates import forget_gates
    from apps.common import hotpath
    from apps.registry import services as registry
    from apps.runtime import services as runtime
    from apps.traces import receiver

    forget_gates()
    refund = make_tool(
        "payments-refund",
        actions=["create"],
        risk_class="critical",  # asks, and needs two distinct approvers
        input_schema={
            "type": "object",
            "properties": {"order": {"type": "string"}, "amount": {"type": "number"}},
            "required": ["order", "amount"],
        },
    )
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Refunds",
            "slug": "refunds-agent",
            "mission": "Refund customers.",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
            "autonomy_level": 3,
        },
    )
    registry.grant_set(
        actor=org.owner, agent=agent, tool=refund, actions=["create"], environments=["prod"]
    )
    _credential, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="sdk approvals"
    )
    second = make_user("dave", ("approver", org.claims))
    # The owner holds the approver role too: only separation of duties keeps them out.
    role_assign(actor=None, user=org.owner, role="approver", department=org.claims)
    forget_scope(org.owner)
    server = ASGIServer()
    server.start()
    yield GatedAgent(server.url, issued.plaintext, agent, (org.approver, second), org.owner)
    server.stop()
    hotpath.shut_down()
    receiver.shut_down()
    forget_gates()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run the agent in a thread of its own; ``out["result"]`` or ``out["error"]`` after."""
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=go, name="agent")
    thread.start()
    return thread, out


def pending_request(agent: Any, thread: threading.Thread) -> ApprovalRequest:
    """The request the agent's step opened, once it has (the agent is then waiting)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and thread.is_alive():
        found = ApprovalRequest.objects.filter(agent=agent, status=ApprovalStatus.PENDING).first()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("the agent never asked")


def answer(approval: ApprovalRequest, actor: Any, verdict: str, comment: str = "") -> None:
    approvals.approval_answer(approval=approval, actor=actor, verdict=verdict, comment=comment)


def test_a_governed_critical_tool_waits_for_two_approvers_runs_once_and_its_approval_is_used_up(
    gated_agent,
) -> None:
    client = tether.Client(gated_agent.url, gated_agent.key)
    ran: list[tuple[str, float]] = []

    @client.governed_tool("payments-refund", action="create", wait_for_approval=60)
    def refund(order: str, amount: float) -> str:
        ran.append((order, amount))
        return f"refunded {order}"

    def agent() -> tuple[str, tether.Denied]:
        with client.run("Refund order A-1") as run:
            done = refund(order="A-1", amount=120)
            with pytest.raises(tether.Denied) as again:
                run.check_tool(
                    "payments-refund",
                    {"order": "A-1", "amount": 120},
                    action="create",
                    approval=approval_id["id"],
                )
            return done, again.value

    approval_id: dict[str, str] = {}
    thread, out = in_thread(agent)
    approval = pending_request(gated_agent.agent, thread)
    approval_id["id"] = str(approval.pk)
    first, second = gated_agent.approvers
    with pytest.raises(NotPermitted, match="owner cannot approve"):
        answer(approval, gated_agent.owner, Verdict.APPROVE)
    answer(approval, first, Verdict.APPROVE)
    with pytest.raises(ApplicationError, match="approved this already"):
        answer(approval, first, Verdict.APPROVE)
    time.sleep(0.5)  # one approval of two: the agent still waits, the body has not run
    assert thread.is_alive() and ran == []
    answer(approval, second, Verdict.APPROVE)
    thread.join(timeout=30)

    assert "error" not in out, out
    done, again = out["result"]
    assert done == "refunded A-1"
    assert ran == [("A-1", 120)]
    assert again.reasons == ("approval_used",)
    assert not isinstance(again, tether.ApprovalRejected | tether.ApprovalExpired)
    stored = ApprovalRequest.objects.get(pk=approval.pk)
    assert stored.status == ApprovalStatus.APPROVED and stored.used_at is not None
    assert stored.used_decision is not None and stored.used_decision.disposition == "allow"


def test_a_rejection_raises_approval_rejected_with_the_approvers_feedback(gated_agent) -> None:
    client = tether.Client(gated_agent.url, gated_agent.key)
    ran: list[str] = []

    @client.governed_tool("payments-refund", action="create", wait_for_approval=True)
    def refund(order: str, amount: float) -> None:
        ran.append(order)

    def agent() -> None:
        with client.run("Refund order A-2"):
            refund(order="A-2", amount=5000)

    thread, out = in_thread(agent)
    approval = pending_request(gated_agent.agent, thread)
    answer(approval, gated_agent.approvers[0], Verdict.REJECT, "Over the refund limit.")
    thread.join(timeout=30)

    error = out["error"]
    assert type(error) is tether.ApprovalRejected
    assert error.reasons == ("approval_rejected",)
    assert error.feedback == "Over the refund limit."
    assert error.approval_id == str(approval.pk)
    assert error.approval is not None and error.approval.status == "rejected"
    assert ran == []


def test_a_request_for_changes_raises_changes_requested_with_what_to_change(
    gated_agent,
) -> None:
    client = tether.Client(gated_agent.url, gated_agent.key)

    def agent() -> None:
        with client.run("Refund order A-3") as run:
            run.check_tool(
                "payments-refund",
                {"order": "A-3", "amount": 80},
                action="create",
                wait_for_approval=True,
            )

    thread, out = in_thread(agent)
    approval = pending_request(gated_agent.agent, thread)
    answer(approval, gated_agent.approvers[1], Verdict.REQUEST_CHANGES, "Refund 60, not 80.")
    thread.join(timeout=30)

    error = out["error"]
    assert type(error) is tether.ChangesRequested
    assert isinstance(error, tether.ApprovalRejected)
    assert error.reasons == ("approval_changes_requested",)
    assert error.feedback == "Refund 60, not 80."


def test_an_expired_request_raises_approval_expired_which_is_not_a_rejection(
    gated_agent,
) -> None:
    client = tether.Client(gated_agent.url, gated_agent.key)
    ran: list[str] = []

    @client.governed_tool("payments-refund", action="create", wait_for_approval=60)
    def refund(order: str, amount: float) -> None:
        ran.append(order)

    def agent() -> None:
        with client.run("Refund order A-4"):
            refund(order="A-4", amount=10)

    thread, out = in_thread(agent)
    approval = pending_request(gated_agent.agent, thread)
    # Nobody answers; the deadline passes and the beat's task expires the request (unless the
    # waiting side, which re-reads it every second, saw the deadline first and did).
    ApprovalRequest.objects.filter(pk=approval.pk).update(expires_at=timezone.now())
    approvals.approvals_expire(now=timezone.now() + timedelta(seconds=1))
    assert ApprovalRequest.objects.get(pk=approval.pk).status == "expired"
    thread.join(timeout=30)

    error = out["error"]
    assert type(error) is tether.ApprovalExpired
    assert not isinstance(error, tether.ApprovalRejected)
    assert error.reasons == ("approval_expired",)
    assert error.approval is not None and error.approval.status == "expired"
    assert error.approval.on_expiry == "deny"
    assert ran == []


def test_an_ask_names_its_request_and_a_wait_that_runs_out_returns_it_pending(
    gated_agent,
) -> None:
    client = tether.Client(gated_agent.url, gated_agent.key)
    with client.run("Refund order A-5") as run:
        with pytest.raises(tether.ApprovalRequired) as asked:
            run.check_tool("payments-refund", {"order": "A-5", "amount": 1}, action="create")
        approval_id = asked.value.approval_id
        assert approval_id is not None
        assert asked.value.decision.approval_id == approval_id

        began = time.monotonic()
        state = run.wait_for_approval(approval_id, timeout=1.5)
        waited = time.monotonic() - began
        with pytest.raises(tether.ApprovalRequired) as still:
            run.check_tool(
                "payments-refund",
                {"order": "A-5", "amount": 1},
                action="create",
                wait_for_approval=1,
            )

    assert isinstance(state, tether.Approval)
    assert (state.id, state.status, state.decided) == (approval_id, "pending", False)
    assert (state.approvals, state.approvals_required, state.used) == (0, 2, False)
    assert state.expires_at is not None and state.expires_at > timezone.now()
    assert waited >= 1.5
    assert still.value.approval_id == approval_id  # the same request: asking again floods nothing
    assert still.value.approval is not None and not still.value.approval.decided
    assert "still pending" in str(still.value)


def test_the_async_client_waits_and_comes_back_with_the_approval(gated_agent) -> None:
    ran: list[str] = []

    async def agent() -> str:
        async with tether.AsyncClient(gated_agent.url, gated_agent.key) as client:

            @client.governed_tool("payments-refund", action="create", wait_for_approval=60)
            async def refund(order: str, amount: float) -> str:
                ran.append(order)
                return order

            async with client.run("Refund order A-6"):
                return await refund(order="A-6", amount=30)

    thread, out = in_thread(lambda: asyncio.run(agent()))
    approval = pending_request(gated_agent.agent, thread)
    for approver in gated_agent.approvers:
        answer(approval, approver, Verdict.APPROVE)
    thread.join(timeout=30)

    assert out == {"result": "A-6"}
    assert ran == ["A-6"]


# --- with the scripted fake -------------------------------------------------------------------


def fake_client(fake: FakeTether) -> tether.Client:
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake), retries=0)
    client._sleep = lambda seconds: None
    return client


def state(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": APPROVAL_ID,
        "status": status,
        "decided": status != "pending",
        "feedback": "",
        "approvals": 0,
        "approvals_required": 1,
        "expires_at": "2030-01-01T12:00:00Z",
        "on_expiry": "pause",
        "used": False,
        "url": f"/approvals/{APPROVAL_ID}/",
        **extra,
    }


def test_an_expiry_that_pauses_the_run_raises_approval_expired_at_once() -> None:
    fake = FakeTether()
    wait_path = f"/api/v1/approvals/{APPROVAL_ID}/wait/"
    fake.queue(
        "decisions/",
        httpx.Response(
            200,
            json=decision(
                "ask", reasons=["approval_required"], approval=state("pending"), retry_after=None
            ),
        ),
        httpx.Response(
            200,
            json=decision(
                "defer", reasons=["approval_expired"], approval=state("expired"), retry_after=60
            ),
        ),
    )
    fake.queue(wait_path, httpx.Response(200, json=state("expired")))
    with fake_client(fake).run("Refund") as run, pytest.raises(tether.ApprovalExpired) as caught:
        run.check_tool("payments-refund", {"order": "A-7"}, wait_for_approval=True)

    assert caught.value.retry_after == 60
    assert caught.value.approval is not None and caught.value.approval.on_expiry == "pause"
    waits = [r for r in fake.requests if r.url.path == wait_path]
    assert [r.url.params["timeout"] for r in waits] == ["25.000"]
    assert [r.headers["Authorization"] for r in waits] == ["Bearer tth_run_89abcdef_secret"]
    assert fake.sent("decisions/")[1]["approval"] == APPROVAL_ID  # came back with it


@pytest.mark.parametrize("value", [-1, float("nan"), "yes"])
def test_a_wait_for_approval_that_is_not_seconds_is_refused_when_the_tool_is_wrapped(value) -> None:
    with pytest.raises(tether.ConfigurationError):
        tether.governed_tool("payments-refund", wait_for_approval=value)
