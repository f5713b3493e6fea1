"""Requests the policy tests ask over and over."""

from __future__ import annotations

from typing import Any

from apps.policy.evaluation import PolicyRequest


def tool_call(
    agent: str, tool: str, action: str, environment: str = "prod", **context: Any
) -> PolicyRequest:
    return PolicyRequest(
        principal=agent,
        action="tool.invoke",
        resource_type="Tool",
        resource=tool,
        context={"environment": environment, "tool_action": action, **context},
    )


def memory(agent: str, action: str, store: str) -> PolicyRequest:
    return PolicyRequest(agent, action, "MemoryStore", store, {"environment": "prod"})
