"""A LangGraph agent whose tools and model calls are governed by Tether.

docs/sdk.md shows this file as it is (a test keeps the two the same), and
tests/sdk/test_langgraph.py runs it against a live Tether with a scripted chat model.
"""

from __future__ import annotations

import json
from typing import Any

import tether
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

MODEL = "gpt-4o-mini"

# What the tools' bodies did: a tool whose call Tether refuses never gets here.
effects: dict[str, list[Any]] = {"lookups": [], "refunds": []}


@tool
@tether.governed_tool("crm-lookup", action="read")
def crm_lookup(customer_id: str) -> str:
    """Look a customer up in the CRM."""
    effects["lookups"].append(customer_id)
    return json.dumps({"customer_id": customer_id, "name": "Ada Lovelace", "tier": "gold"})


@tool
@tether.governed_tool("payment-refund", action="create")
def payment_refund(order: str, amount: float) -> str:
    """Refund an order."""
    effects["refunds"].append((order, amount))
    return f"Refunded {amount} on {order}."


TOOLS = [crm_lookup, payment_refund]


def refused(error: tether.Denied) -> str:
    """Tether said no: tell the model why instead of running the tool."""
    return f"Not allowed by Tether ({', '.join(error.reasons)}): {error.reasoning}"


def build_agent(client: tether.Client, model: BaseChatModel | Runnable[Any, Any]) -> Any:
    """A ReAct-style graph: the model proposes tool calls, governed tools run them.

    ``model`` is a chat model with ``TOOLS`` bound (``ChatOpenAI(...).bind_tools(TOOLS)``);
    the graph is invoked inside ``with client.run(...)``.
    """

    def call_model(state: MessagesState) -> dict[str, Any]:
        run = client.current_run()
        estimate = sum(len(str(m.content)) for m in state["messages"]) // 4 + 1
        decision = run.check_model(MODEL, estimate, 256)  # reserves tokens, may degrade
        reply = model.invoke(state["messages"])  # a real agent calls decision.model
        usage = reply.usage_metadata or {}
        run.report_usage(
            decision, usage.get("input_tokens", estimate), usage.get("output_tokens", 0)
        )
        return {"messages": [reply]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", call_model)
    graph.add_node("tools", ToolNode(TOOLS, handle_tool_errors=refused))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()
