"""Cedar evaluation for the decision service: ``policy_evaluate(PolicyRequest) -> PolicyResult``.

Nothing is parsed per request. A per-process snapshot holds the parsed Schema, the Entities
(the whole registry) and the baseline and admin statements; each agent's own registry
statements are compiled into a PolicySet on that agent's first request and kept with the
snapshot. The snapshot is rebuilt only when the policy generation changes:

- a bump made in this process (``apps.common.generation``) is seen on the very next call;
- bumps from other processes (the counter in Redis) and writes nobody bumped for (a
  fingerprint of the registry and policy tables, one query) are checked at most every
  ``POLICY_REFRESH_MS`` milliseconds (default 1000);
- a grant that expires makes the snapshot stale at that instant.

Default deny, forbid beats permit (Cedar's rules). Fail closed: any error — a bad request, a
policy that errors while evaluating, a database that cannot say whether the snapshot is
current — answers "not allowed" with the errors listed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cedarpy
from django.conf import settings
from django.utils import timezone

from apps.common import generation

from .compiler import (
    BASELINE_TEXT,
    AgentRules,
    PolicyTextInvalid,
    RegistryData,
    ResourceFacts,
    Statement,
    agent_statement_texts,
    load_registry,
    parse_generated,
    parse_policy_text,
    policy_set_json,
    registry_fingerprint,
)
from .constants import GENERATION, RESOURCE_TYPE_OF_ACTION, Action, Origin
from .models import Policy
from .schema import schema

logger = logging.getLogger(__name__)

_LONG_MAX = 2**63 - 1
_TEXT_MAX = 200
_DATA_CLASSES_MAX = 50


@dataclass(frozen=True)
class PolicyRequest:
    """One question for Cedar. ``principal`` is an agent slug; ``resource`` a slug (or, for
    ``Model``, the model name); ``context`` as in docs/policy.md (unknown keys are ignored:
    a policy validated against the schema cannot read them)."""

    principal: str
    action: str
    resource_type: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyResult:
    """``policies``: the ids of the statements that decided (permits for an allow, forbids for
    a deny; empty for a default deny). ``errors``: why evaluation could not be trusted."""

    allowed: bool
    policies: list[str]
    errors: list[str]


# --- the snapshot ----------------------------------------------------------------------------


@dataclass
class PolicySnapshot:
    """Everything evaluation needs, parsed once per policy generation."""

    local_generation: int
    key: tuple[Any, ...]  # (shared generation, fingerprint) it was built at
    built_at: float  # time.monotonic()
    valid_until: float | None  # time.time() of the next grant expiry
    entities: cedarpy.Entities | None
    statements: dict[str, Statement]  # baseline and admin, by id
    rules: dict[str, AgentRules]
    tools: dict[str, ResourceFacts]
    stores: dict[str, ResourceFacts]
    errors: list[str]  # the set could not be compiled: every evaluation denies
    _agent_sets: dict[str, tuple[cedarpy.PolicySet, dict[str, Statement]]] = field(
        default_factory=dict, repr=False
    )
    # Cedar's answers to requests already asked under this snapshot: the answer is a function of
    # the policies, the entities (both fixed in a snapshot) and the request alone.
    answers: dict[str, PolicyResult] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expired(self) -> bool:
        return self.valid_until is not None and time.time() >= self.valid_until

    def agent_statements(self, principal: str) -> dict[str, Statement]:
        return self._agent_entry(principal)[1]

    def policy_set(self, principal: str) -> cedarpy.PolicySet:
        return self._agent_entry(principal)[0]

    def _agent_entry(self, principal: str) -> tuple[cedarpy.PolicySet, dict[str, Statement]]:
        rules = self.rules.get(principal)
        key = principal if rules is not None else ""
        entry = self._agent_sets.get(key)
        if entry is not None:
            return entry
        with self._lock:
            entry = self._agent_sets.get(key)
            if entry is None:
                own = (
                    parse_generated(agent_statement_texts(principal, rules), Origin.REGISTRY)
                    if rules is not None
                    else {}
                )
                merged = [*self.statements.values(), *own.values()]
                entry = (cedarpy.PolicySet.from_json_str(policy_set_json(merged)), own)
                self._agent_sets[key] = entry
        return entry

    def statement(self, statement_id: str, principal: str = "") -> Statement | None:
        found = self.statements.get(statement_id)
        if found is None and principal:
            found = self.agent_statements(principal).get(statement_id)
        return found


def _baseline() -> dict[str, Statement]:
    return parse_generated(dict(BASELINE_TEXT), Origin.BASELINE)


def _admin_statements() -> tuple[dict[str, Statement], list[str]]:
    statements: dict[str, Statement] = {}
    errors: list[str] = []
    for slug, text in Policy.objects.filter(enabled=True).values_list("slug", "text"):
        try:
            for statement in parse_policy_text(text, slug=slug):
                statements[statement.id] = statement
        except PolicyTextInvalid as exc:
            # Saved policies were valid when saved; failing now (a schema change) must not
            # quietly drop what may be a forbid.
            errors.append(f"policy {slug!r} no longer compiles: {exc}")
    return statements, errors


def build_snapshot(*, local_generation: int, key: tuple[Any, ...]) -> PolicySnapshot:
    registry: RegistryData = load_registry()
    statements = _baseline()
    admin, errors = _admin_statements()
    statements.update(admin)
    entities = None
    try:
        entities = cedarpy.Entities.from_json_str(json.dumps(registry.entities), schema())
    except ValueError as exc:
        errors.append(f"the registry does not fit the policy schema: {exc}")
    valid_until = registry.valid_until.timestamp() if registry.valid_until else None
    return PolicySnapshot(
        local_generation=local_generation,
        key=key,
        built_at=time.monotonic(),
        valid_until=valid_until,
        entities=entities,
        statements=statements,
        rules=registry.rules,
        tools=registry.tools,
        stores=registry.stores,
        errors=errors,
    )


_snapshot: PolicySnapshot | None = None
_checked_at = 0.0
_build_lock = threading.Lock()
_builds = 0


def _refresh_seconds() -> float:
    return max(0, int(getattr(settings, "POLICY_REFRESH_MS", 1000))) / 1000


def current_snapshot() -> PolicySnapshot:
    """The snapshot to evaluate against, rebuilt only when the policy generation moved.

    The fast path reads two module globals and one dict entry. Raises when the database
    cannot answer the freshness check (the caller fails closed).
    """
    global _snapshot, _checked_at, _builds
    snap = _snapshot
    local = generation.local(GENERATION)
    if (
        snap is not None
        and snap.local_generation == local
        and time.monotonic() - _checked_at < _refresh_seconds()
        and not snap.expired()
    ):
        return snap
    with _build_lock:
        snap = _snapshot
        local = generation.local(GENERATION)
        # Read the generation and fingerprint before the rows: a write that lands in between
        # then makes the next check rebuild again, never leaves old rows under a new key.
        key = (generation.read(GENERATION), registry_fingerprint())
        if snap is None or snap.local_generation != local or snap.key != key or snap.expired():
            snap = build_snapshot(local_generation=local, key=key)
            _snapshot = snap
            _builds += 1
        _checked_at = time.monotonic()
        return snap


def snapshot_builds() -> int:
    """How many snapshots this process has built (tests, the benchmark)."""
    return _builds


def reset_snapshot() -> None:
    """Forget the snapshot; the next evaluation rebuilds (tests)."""
    global _snapshot, _checked_at
    with _build_lock:
        _snapshot = None
        _checked_at = 0.0


# --- requests --------------------------------------------------------------------------------


def _text(context: Mapping[str, Any], key: str, default: str, errors: list[str]) -> str:
    value = context.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        errors.append(f"context.{key} must be a string.")
        return default
    if len(value) > _TEXT_MAX:
        errors.append(f"context.{key} is longer than {_TEXT_MAX} characters.")
    return value


def _context(request: PolicyRequest, snap: PolicySnapshot) -> tuple[dict[str, Any], list[str]]:
    """The request's context in the schema's shape, defaults filled in from the registry."""
    raw = request.context or {}
    errors: list[str] = []
    facts: ResourceFacts | None = None
    if request.action == Action.TOOL_INVOKE:
        facts = snap.tools.get(request.resource)
    elif request.action in (Action.MEMORY_READ, Action.MEMORY_WRITE):
        facts = snap.stores.get(request.resource)

    environment = _text(raw, "environment", "", errors)
    if not environment:
        errors.append("context.environment is required (dev, staging, canary or prod).")
    data_classes = raw.get("data_classes")
    if data_classes is None:
        data_classes = list(facts.data_classes) if facts else []
    elif not isinstance(data_classes, list | tuple | set | frozenset) or not all(
        isinstance(v, str) for v in data_classes
    ):
        errors.append("context.data_classes must be a list of strings.")
        data_classes = []
    elif len(data_classes) > _DATA_CLASSES_MAX:
        errors.append(f"context.data_classes holds more than {_DATA_CLASSES_MAX} entries.")

    hour = raw.get("hour")
    if hour is None:
        hour = timezone.localtime().hour
    elif isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        errors.append("context.hour must be a whole number from 0 to 23.")
        hour = 0
    delegated = raw.get("delegated", False)
    if not isinstance(delegated, bool):
        errors.append("context.delegated must be true or false.")
        delegated = True

    context: dict[str, Any] = {
        "environment": environment,
        "tool_action": _text(raw, "tool_action", "", errors),
        "risk_class": _text(raw, "risk_class", facts.risk_class if facts else "", errors),
        "data_classes": sorted(set(data_classes)),
        "on_behalf_of": _text(raw, "on_behalf_of", "", errors),
        "delegated": delegated,
        "hour": hour,
    }
    amount = raw.get("amount")
    if amount is not None:
        if isinstance(amount, float) and math.isfinite(amount) and amount.is_integer():
            amount = int(amount)
        if isinstance(amount, bool) or not isinstance(amount, int):
            errors.append("context.amount must be a whole number (e.g. cents or whole units).")
        elif not -_LONG_MAX <= amount <= _LONG_MAX:
            errors.append("context.amount is out of range.")
        else:
            context["amount"] = amount
    return context, errors


def _request_errors(request: PolicyRequest) -> list[str]:
    expected = RESOURCE_TYPE_OF_ACTION.get(request.action)
    if expected is None:
        return [f"unknown action {str(request.action)[:60]!r}; use {', '.join(Action.values)}."]
    errors = []
    if request.resource_type != expected:
        errors.append(f"{request.action} applies to a {expected}, not {request.resource_type!r}.")
    if not isinstance(request.principal, str) or not request.principal:
        errors.append("principal (the agent's slug) is required.")
    if not isinstance(request.resource, str) or not request.resource:
        errors.append("resource is required.")
    return errors


def _cedar_request(request: PolicyRequest, context: dict[str, Any]) -> dict[str, Any]:
    return {
        "principal": {"type": "Agent", "id": request.principal},
        "action": {"type": "Action", "id": request.action},
        "resource": {"type": request.resource_type, "id": request.resource},
        "context": context,
    }


def _decide(
    snap: PolicySnapshot,
    request: PolicyRequest,
    policy_set: cedarpy.PolicySet,
) -> PolicyResult:
    errors = _request_errors(request)
    if errors:
        return PolicyResult(allowed=False, policies=[], errors=errors)
    if snap.errors or snap.entities is None:
        return PolicyResult(allowed=False, policies=[], errors=list(snap.errors))
    context, errors = _context(request, snap)
    if errors:
        return PolicyResult(allowed=False, policies=[], errors=errors)
    answer = cedarpy.is_authorized(_cedar_request(request, context), policy_set, snap.entities)
    diagnostics = answer.diagnostics
    cedar_errors = [str(e) for e in diagnostics.errors]
    if cedar_errors:
        # A policy that errored might have been a forbid that applied: never allow then.
        return PolicyResult(allowed=False, policies=[], errors=cedar_errors)
    return PolicyResult(allowed=answer.allowed, policies=list(diagnostics.reasons), errors=[])


ANSWER_CACHE_MAX = 50_000


def _answer_key(request: PolicyRequest) -> str:
    """The request as canonical JSON, or '' when it cannot be one (then it is not cached)."""
    try:
        return json.dumps(
            [request.principal, request.action, request.resource_type, request.resource,
             request.context],
            sort_keys=True,
            separators=(",", ":"),
        )  # fmt: skip
    except (TypeError, ValueError):
        return ""


def policy_evaluate(request: PolicyRequest) -> PolicyResult:
    """Ask Cedar: is this agent permitted this action on this resource in this context?"""
    try:
        snap = current_snapshot()
        key = _answer_key(request)
        answer = snap.answers.get(key) if key else None
        if answer is None:
            policy_set = snap.policy_set(
                request.principal if isinstance(request.principal, str) else ""
            )
            answer = _decide(snap, request, policy_set)
            if key:
                if len(snap.answers) >= ANSWER_CACHE_MAX:
                    snap.answers.clear()
                snap.answers[key] = answer
        return answer
    except Exception as exc:  # fail closed, and say why
        logger.exception("policy evaluation failed")
        return PolicyResult(
            allowed=False, policies=[], errors=[f"policy evaluation failed: {exc}"[:500]]
        )


# --- simulation (the console's "try it" and the API's simulate) -------------------------------


@dataclass(frozen=True)
class FiredStatement:
    id: str
    effect: str
    origin: str
    text: str
    policy: str


@dataclass(frozen=True)
class Simulation:
    """A decision as a person reads it: the result, the statements that decided, and what
    the request looked like after defaults were filled in."""

    result: PolicyResult
    fired: list[FiredStatement]
    context: dict[str, Any]
    draft_statements: int = 0


def policy_simulate(
    request: PolicyRequest, *, draft_text: str = "", draft_policy: str = ""
) -> Simulation:
    """Evaluate ``request`` against the current set, or against the current set with
    ``draft_text`` standing in for policy ``draft_policy`` (or added as ``draft``).

    Raises PolicyTextInvalid when the draft does not compile (the caller shows where).
    """
    snap = current_snapshot()
    principal = request.principal if isinstance(request.principal, str) else ""
    own = snap.agent_statements(principal)
    statements = dict(snap.statements)
    draft: list[Statement] = []
    if draft_text.strip():
        draft = parse_policy_text(draft_text, slug=draft_policy or "draft", origin=Origin.DRAFT)
        if draft_policy:
            statements = {k: s for k, s in statements.items() if s.policy != draft_policy}
        statements.update({s.id: s for s in draft})
    if draft:
        policy_set = cedarpy.PolicySet.from_json_str(
            policy_set_json([*statements.values(), *own.values()])
        )
    else:
        policy_set = snap.policy_set(principal)
    result = _decide(snap, request, policy_set)
    context, _errors = _context(request, snap) if not _request_errors(request) else ({}, [])
    every = {**statements, **own}
    fired = [
        FiredStatement(id=s.id, effect=s.effect, origin=s.origin, text=s.text, policy=s.policy)
        for s in (every.get(pid) for pid in result.policies)
        if s is not None
    ]
    return Simulation(result=result, fired=fired, context=context, draft_statements=len(draft))


def effective_statements(principal: str = "") -> list[Statement]:
    """The statements in force: baseline and admin ones, plus one agent's registry ones."""
    snap = current_snapshot()
    own = snap.agent_statements(principal) if principal else {}
    return [*snap.statements.values(), *own.values()]
