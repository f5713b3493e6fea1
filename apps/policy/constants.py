"""Names the policy app shares with the decision service, the console and the API."""

from __future__ import annotations

from django.db import models

POLICY_TEXT_MAX = 20_000
POLICY_STATEMENTS_MAX = 50
NAME_MAX = 100
SLUG_MAX = 60
COMMENT_MAX = 300

# The generation every policy and registry write bumps (``apps.common.generation``).
GENERATION = "policy"

# Console paths under /policies/ and the prefixes of built-in statement ids.
RESERVED_SLUGS = frozenset({"new", "try", "effective", "simulate", "registry", "baseline", "draft"})


class Action(models.TextChoices):
    """The governed actions; each applies to one kind of resource."""

    TOOL_INVOKE = "tool.invoke", "tool.invoke — call a tool"
    MODEL_CALL = "model.call", "model.call — call a model"
    MEMORY_READ = "memory.read", "memory.read — read a memory store"
    MEMORY_WRITE = "memory.write", "memory.write — write a memory store"
    DELEGATE = "delegate", "delegate — start a sub-agent"


class ResourceType(models.TextChoices):
    TOOL = "Tool", "Tool"
    MODEL = "Model", "Model"
    MEMORY_STORE = "MemoryStore", "Memory store"
    AGENT = "Agent", "Agent"


RESOURCE_TYPE_OF_ACTION: dict[str, str] = {
    Action.TOOL_INVOKE: ResourceType.TOOL,
    Action.MODEL_CALL: ResourceType.MODEL,
    Action.MEMORY_READ: ResourceType.MEMORY_STORE,
    Action.MEMORY_WRITE: ResourceType.MEMORY_STORE,
    Action.DELEGATE: ResourceType.AGENT,
}


class Origin(models.TextChoices):
    """Where a statement in the effective policy set comes from."""

    REGISTRY = "registry", "Registry (compiled)"
    BASELINE = "baseline", "Built-in baseline"
    ADMIN = "admin", "Written by an admin"
    DRAFT = "draft", "Draft under test"
