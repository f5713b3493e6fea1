"""The kill switch end to end, in real Chromium against the real ASGI app (uvicorn):

a real LangGraph agent (a scripted chat model) runs through the SDK in a thread; it looks a
customer up, and while its model "thinks" about a refund an admin presses the kill switch on
the agent's page; the refund's tool body never executes; the run's token is refused and its
memory writes are denied; the admin releases the switch from the incident page; a new run may
start, while the killed run stays killed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.runtime.models import Decision, Run

from ..factories import PASSWORD, make_tool
from .helpers import log_in

SDK = Path(__file__).resolve().parents[2] / "sdk"
if str(SDK) not in sys.path:
    sys.path.insert(0, str(SDK))

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DECISIONS = "/api/v1/runtime/decisions/"
WAIT = 30  # seconds the agent thread may take for any one stage on a loaded machine


@pytest.fixture
def site_url(asgi_server: Any) -> str:
    return str(asgi_server.url)


@pytest.fixture
def claims_agent(org: Any) -> tuple[Any, str]:
    """Both tools granted, so only the kill can keep the refund from running."""
    from apps.registry import services as registry
    from apps.registry.models import MemoryStore
    from apps.runtime import services as runtime

    lookup = make_tool(
        "crm-lookup",
        actions=["read"],
        input_schema={"type": "object", "properties": {"customer_id": {"type": "string"}}},
    )
    refund = make_tool(
        "payment-refund",
        actions=["create"],
        risk_class="medium",
        input_schema={
            "type": "object",
            "properties": {"order": {"type": "string"}, "amount": {"type": "number"}},
        },
    )
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
    notes = MemoryStore.objects.create(name="Case notes", slug="case-notes", store_class="durable")
    registry.memory_binding_set(actor=org.owner, agent=agent, store=notes, access="read_write")
    _, issued = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="prod", name="langgraph worker"
    )
    return agent, issued.plaintext


def scripted_model(pressed: threading.Event) -> Any:
    """Looks the customer up, then waits for the kill before proposing the refund."""
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    def turns() -> Any:
        yield AIMessage(
            "", tool_calls=[{"name": "crm_lookup", "args": {"customer_id": "c-42"}, "id": "1"}]
        )
        pressed.wait(WAIT)  # the model is "thinking" when the admin presses the button
        yield AIMessage(
            "",
            tool_calls=[
                {"name": "payment_refund", "args": {"order": "o-7", "amount": 90}, "id": "2"}
            ],
        )
        yield AIMessage("Refunded.")

    return GenericFakeChatModel(messages=turns())


def test_an_admin_kills_a_langgraph_agent_from_its_page_and_nothing_more_happens(
    org: Any,
    claims_agent: tuple[Any, str],
    asgi_server: Any,
    new_page: Any,
    shoot: Any,
) -> None:
    import tether
    from langchain_core.messages import HumanMessage

    from ..sdk import langgraph_agent
    from ..sdk.langgraph_agent import build_agent

    agent, key = claims_agent
    for done in langgraph_agent.effects.values():
        done.clear()
    pressed = threading.Event()
    started = threading.Event()
    seen: dict[str, Any] = {}

    def run_the_agent() -> None:
        with tether.Client(url=asgi_server.url, agent_key=key) as client:
            graph = build_agent(client, scripted_model(pressed))
            try:
                with client.run("Refund order o-7 for customer c-42") as run:
                    seen["run"] = run
                    started.set()
                    graph.invoke({"messages": [HumanMessage("Refund order o-7.")]})
            except tether.RunKilled as exc:
                seen["killed"] = exc
            except BaseException as exc:  # the test says what went wrong instead of hanging
                seen["error"] = exc
            finally:
                started.set()
            try:
                seen["run"].check_memory("case-notes", write=True)
            except tether.RunEnded as exc:
                seen["memory_write"] = exc

    thread = threading.Thread(target=run_the_agent, name="langgraph-agent", daemon=True)
    thread.start()
    assert started.wait(WAIT) and "error" not in seen, seen.get("error")

    admin = new_page()
    log_in(admin, "ada", PASSWORD)
    admin.goto(f"/agents/{agent.slug}/")
    admin.get_by_role("link", name="Kill switch…").click()
    assert "1 running run of 1 agent" in admin.locator("#blast-title + p").inner_text()
    admin.get_by_label("Reason").fill("It is refunding orders nobody asked about.")
    admin.get_by_label("Frozen memory stores").select_option("allow")
    shoot(admin, "kill-flow-confirm")
    admin.get_by_role("button", name="Stop 1 run now").click()
    admin.get_by_role(
        "heading", name="Incident: an agent (all its runs) claims-triage stopped"
    ).wait_for()
    pressed.set()
    thread.join(WAIT)
    assert not thread.is_alive(), "the agent did not stop"
    assert "error" not in seen, seen.get("error")

    # The refund's body never ran; the lookup before the kill did.
    assert langgraph_agent.effects["lookups"] == ["c-42"]
    assert langgraph_agent.effects["refunds"] == []
    assert isinstance(seen["killed"], tether.RunKilled)
    assert isinstance(seen["memory_write"], tether.RunEnded)
    run = seen["run"]
    killed = Run.objects.get(pk=run.id)
    assert killed.state == "killed"
    assert not Decision.objects.filter(run=killed, target="payment-refund", disposition="allow")

    # Its token is refused outright, for a memory write as for anything else.
    refused = httpx.post(
        f"{asgi_server.url}{DECISIONS}",
        headers={"Authorization": f"Bearer {run.token}"},
        json={"action": "memory.write", "store": "case-notes"},
    )
    assert refused.status_code == 401

    admin.reload()
    assert "case-notes" in admin.locator("#why-title + p + dl, #why-title ~ dl").first.inner_text()
    shoot(admin, "kill-flow-incident")

    admin.get_by_label("Why release it").fill("Refund rules fixed in v2.")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Release…").click()
    admin.get_by_text("Released: new runs may start again").wait_for()
    shoot(admin, "kill-flow-released")

    # After release a new run starts and may write its memory; the killed run stays killed.
    with (
        tether.Client(url=asgi_server.url, agent_key=key) as client,
        client.run("Next claim") as again,
    ):
        assert again.check_memory("case-notes", write=True).disposition == "allow"
    assert Run.objects.get(pk=run.id).state == "killed"
