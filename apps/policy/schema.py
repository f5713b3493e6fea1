"""The Cedar schema every policy is validated against, and the context every request carries.

Entities mirror the registry: agents (in their team and department), tools, memory stores and
models. One context type serves every action so that a policy reads the same whatever it
governs; ``amount`` is the one optional key (absent is not zero), so a policy must ask
``context has amount`` before comparing it.
"""

from __future__ import annotations

import threading

import cedarpy

SCHEMA_TEXT = """\
// Tether's Cedar schema. Entity ids are registry slugs (models: the model name).
entity Department;
entity Team in [Department];
entity Agent in [Team, Department] = {
  department: String,          // department slug
  team: String,                // team slug, "" when none
  owner: String,               // owner's username, "" when unowned
  status: String,              // draft | active | suspended | retired
  autonomy_level: Long,        // 0 (suggest only) .. 4 (fully autonomous)
  environments: Set<String>,   // where it may run: dev, staging, canary, prod
  tags: Set<String>,
};
entity Tool = {
  risk_class: String,          // low | medium | high | critical
  data_classes: Set<String>,   // e.g. pii, financial
  actions: Set<String>,        // the operations a grant can allow
  approval_required: Bool,
  reversible: Bool,
};
entity MemoryStore = {
  store_class: String,         // working | session | durable | shared | forbidden
  data_classes: Set<String>,
};
entity Model;

type Context = {
  environment: String,         // where the run is: dev, staging, canary, prod
  tool_action: String,         // the tool's action, e.g. read; "" for other actions
  risk_class: String,          // the tool's risk class; "" for other actions
  data_classes: Set<String>,   // data classes the call touches
  amount?: Long,               // a whole amount when the call moves value (ask `has` first)
  on_behalf_of: String,        // username the run acts for; "" when none
  delegated: Bool,             // true in a sub-agent run
  hour: Long,                  // hour of day, 0-23, in the server's time zone
};

action "tool.invoke" appliesTo { principal: Agent, resource: Tool, context: Context };
action "model.call" appliesTo { principal: Agent, resource: Model, context: Context };
action "memory.read", "memory.write" appliesTo {
  principal: Agent, resource: MemoryStore, context: Context
};
action "delegate" appliesTo { principal: Agent, resource: Agent, context: Context };
"""

# The attributes above, by type: for "did you mean" hints on a misspelt name.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Agent": (
        "department", "team", "owner", "status", "autonomy_level", "environments", "tags",
    ),
    "Tool": ("risk_class", "data_classes", "actions", "approval_required", "reversible"),
    "MemoryStore": ("store_class", "data_classes"),
    "Model": (),
    "Context": (
        "environment", "tool_action", "risk_class", "data_classes", "amount", "on_behalf_of",
        "delegated", "hour",
    ),
}  # fmt: skip

_schema: cedarpy.Schema | None = None
_lock = threading.Lock()


def schema() -> cedarpy.Schema:
    """The parsed schema, parsed once per process."""
    global _schema
    if _schema is None:
        with _lock:
            if _schema is None:
                _schema = cedarpy.Schema.from_str(SCHEMA_TEXT)
    return _schema
