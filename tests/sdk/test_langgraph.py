"""A real LangGraph agent, driven by a scripted chat model (no network), through the SDK against
a live Tether: the granted tool runs, the forbidden one is refused before its body, and the
budgets count what happened."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tether
from django.db.models import Sum
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from apps.runtime.models import BudgetLedgerEntry, Decision, Run

from . import langgraph_agent
from .langgraph_agent import MODEL, build_agent

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def scripted_model() -> GenericFakeChatModel:
    """The model asks for a lookup, then a refund, then answers: three turns, each with usage."""

    def turn(content: str, tool_calls: list[dict], input_tokens: int) -> AIMessage:
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": 20,
            "total_tokens": input_tokens + 20,
        }
        return AIMessage(content, tool_calls=tool_calls, usage_metadata=usage)

    return GenericFakeChatModel(
        messages=iter(
            [
                turn("", [{"name": "crm_lookup", "args": {"customer_id": "c-42"}, "id": "1"}], 100),
                turn(
                    "",
                    [{"name": "payment_refund", "args": {"order": "o-7", "amount": 90}, "id": "2"}],
                    150,
                ),
                turn("I looked the customer up; the refund needs someone else.", [], 200),
            ]
        )
    )


@pytest.fixture(autouse=True)
def clean_effects() -> None:
    for done in langgraph_agent.effects.values():
        done.clear()


@pytest.mark.django_db(transaction=True)
def test_a_langgraph_agent_runs_granted_tools_and_is_refused_the_rest(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    agent = build_agent(client, scripted_model())

    with client.run("Refund order o-7 for customer c-42") as run:
        result = agent.invoke({"messages": [HumanMessage("Refund order o-7 for customer c-42.")]})

    # The granted tool ran; the forbidden one never reached its body.
    assert langgraph_agent.effects["lookups"] == ["c-42"]
    assert langgraph_agent.effects["refunds"] == []
    lookup, refund = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert lookup.status == "success"
    assert "Ada Lovelace" in lookup.content
    assert refund.status == "error"
    assert "tool_not_granted" in refund.content
    assert result["messages"][-1].content.startswith("I looked the customer up")

    # Every step was asked about and recorded.
    recorded = list(
        Decision.objects.filter(run_id=run.id)
        .order_by("id")
        .values_list("action", "target", "disposition")
    )
    assert recorded == [
        ("model.call", MODEL, "allow"),
        ("tool.invoke", "crm-lookup", "allow"),
        ("model.call", MODEL, "allow"),
        ("tool.invoke", "payment-refund", "deny"),
        ("model.call", MODEL, "allow"),
    ]
    assert Run.objects.get(pk=run.id).state == "finished"

    # Budgets count: one tool call allowed, and the tokens the model really used.
    def charged(budget: str) -> float:
        entries = BudgetLedgerEntry.objects.filter(budget__name=budget)
        return float(entries.aggregate(total=Sum("amount"))["total"] or 0)

    assert charged("tool calls per run") == 1
    assert charged("tokens per day") == (100 + 20) + (150 + 20) + (200 + 20)


def test_the_sdk_guide_shows_the_agent_that_is_tested() -> None:
    source = Path(langgraph_agent.__file__).read_text()
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert source in blocks, "docs/sdk.md should show tests/sdk/langgraph_agent.py verbatim"
