"""Registry objects as plain data: the manifest ``spec`` (also the audit before/after) and the
behaviour snapshot an AgentVersion freezes. One representation, used everywhere."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from .models import Agent, MemoryStore, Tool
from .validators import BLAST_RADIUS_KEYS


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def grant_specs(agent: Agent) -> list[dict[str, Any]]:
    return [
        {
            "tool": grant.tool.slug,
            "actions": list(grant.actions),
            "environments": list(grant.environments),
            "constraints": dict(grant.constraints),
            "expires_at": _iso(grant.expires_at),
        }
        for grant in sorted(agent.grants.select_related("tool"), key=lambda g: g.tool.slug)
    ]


def memory_specs(agent: Agent) -> list[dict[str, Any]]:
    return [
        {"store": binding.store.slug, "access": binding.access}
        for binding in sorted(
            agent.memory_bindings.select_related("store"), key=lambda b: b.store.slug
        )
    ]


def shutdown_spec(agent: Agent) -> dict[str, Any]:
    """The shutdown path. ``webhook`` only when one is set (exports of agents without one stay
    as they were); its signing secret never: it is write-only."""
    spec = {
        "action": agent.shutdown_action,
        "contact": agent.shutdown_contact,
        "notes": agent.shutdown_notes,
    }
    if agent.shutdown_webhook:
        spec["webhook"] = agent.shutdown_webhook
    return spec


def agent_spec(agent: Agent) -> dict[str, Any]:
    """The agent as its manifest states it (key order is the manifest's order)."""
    return {
        "mission": agent.mission,
        "owner": agent.owner.get_username() if agent.owner else None,
        "department": agent.department.slug,
        "team": agent.team.slug if agent.team else None,
        "business_process": agent.business_process,
        "status": agent.status,
        "autonomy_level": agent.autonomy_level,
        "environments": list(agent.environments),
        "model_family": agent.model_family,
        "default_model": agent.default_model,
        "providers": list(agent.providers),
        "failure_posture": agent.failure_posture,
        "shutdown": shutdown_spec(agent),
        "rollback": {
            "action": agent.rollback_action,
            "contact": agent.rollback_contact,
            "notes": agent.rollback_notes,
        },
        "tags": list(agent.tags),
        "knowledge_base_version": agent.knowledge_base_version,
        "parameters": dict(agent.parameters),
        "run_token_ttl_seconds": agent.run_token_ttl_seconds,
        "delegates_to": list(agent.delegates_to),
        "instructions": agent.instructions,
        "tools": grant_specs(agent),
        "memory": memory_specs(agent),
    }


def blast_radius_spec(pointers: Any) -> dict[str, Any]:
    """The blast radius in reading order (records, people, money, currency), whatever order the
    database kept (PostgreSQL's jsonb sorts keys by length)."""
    pointers = pointers if isinstance(pointers, dict) else {}
    order = {key: rank for rank, key in enumerate(BLAST_RADIUS_KEYS)}
    return {
        key: pointers[key] for key in sorted(pointers, key=lambda k: (order.get(k, len(order)), k))
    }


def usd_number(amount: Any) -> int | float:
    """An amount of US dollars as a manifest writes it: a whole number as an int, anything else
    as the decimal without trailing zeros, as a float. A cost per call has at most six places
    and twelve digits, which a float holds exactly enough to read back the same, so export →
    apply → export keeps the same bytes."""
    normal = Decimal(str(amount)).normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def tool_spec(tool: Tool) -> dict[str, Any]:
    return {
        "description": tool.description,
        "owner": tool.owner.get_username() if tool.owner else None,
        "risk_class": tool.risk_class,
        "actions": list(tool.actions),
        "capabilities": tool.capabilities,
        "prohibitions": tool.prohibitions,
        "data_classes": sorted(dc.slug for dc in tool.data_classes.all()),
        "rate_limit_per_minute": tool.rate_limit_per_minute,
        "cost_per_call_usd": usd_number(tool.cost_per_call_usd),
        "approval_required": tool.approval_required,
        "reversible": tool.reversible,
        "rollback_hint": tool.rollback_hint,
        "preview_format": tool.preview_format,
        "blast_radius": blast_radius_spec(tool.blast_radius),
        "systems": list(tool.systems),
        "downstream_tools": list(tool.downstream_tools),
        "audit_event": tool.audit_event,
        "input_schema": tool.input_schema,
        "output_schema": tool.output_schema,
    }


def memory_store_spec(store: MemoryStore) -> dict[str, Any]:
    return {
        "description": store.description,
        "owner": store.owner.get_username() if store.owner else None,
        "store_class": store.store_class,
        "retention_days": store.retention_days,
        "data_classes": sorted(dc.slug for dc in store.data_classes.all()),
    }


def behaviour_snapshot(agent: Agent) -> dict[str, Any]:
    """What an AgentVersion freezes: everything that changes how the agent behaves."""
    return {
        "model_family": agent.model_family,
        "default_model": agent.default_model,
        "providers": list(agent.providers),
        "autonomy_level": agent.autonomy_level,
        "failure_posture": agent.failure_posture,
        "environments": list(agent.environments),
        "knowledge_base_version": agent.knowledge_base_version,
        "parameters": dict(agent.parameters),
        "run_token_ttl_seconds": agent.run_token_ttl_seconds,
        "delegates_to": list(agent.delegates_to),
        "instructions": agent.instructions,
        "instructions_sha256": sha256_text(agent.instructions),
        "tools": grant_specs(agent),
        "memory": memory_specs(agent),
    }


BEHAVIOUR_FOR_RUNS = (
    "model_family",
    "default_model",
    "providers",
    "knowledge_base_version",
    "instructions",
    "parameters",
)


def version_behaviour(version: Any) -> dict[str, Any]:
    """What a run of ``version`` is told to run with (its snapshot's behaviour, frozen)."""
    snapshot = version.snapshot or {}
    return {"version": version.number, **{key: snapshot.get(key) for key in BEHAVIOUR_FOR_RUNS}}
