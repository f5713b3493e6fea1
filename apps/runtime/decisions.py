"""The decision service: one pipeline for every governed step, fail closed, recorded first.

identity (the run token, checked by the adapter) -> run and agent state -> registry scope ->
tool contract -> autonomy and approval -> policy (Cedar) -> budgets, rate limit and circuit
breaker (one atomic reservation) -> the durable decision row -> the answer.

Every stage may end the decision early; every decision is written to ``runtime_decision``
before the answer is returned. If the database cannot take the row, the answer is ``deny``
and the row goes to a local spool that is replayed later: no ``allow`` ever exists without
its record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import JSONField, Q
from django.utils import timezone
from jsonschema import Draft202012Validator

from apps.approvals import gates
from apps.approvals import services as approvals
from apps.approvals.constants import ApprovalStatus, ExpiryOutcome, GateOutcome
from apps.approvals.models import ApprovalRequest
from apps.audit.services import Actor, audit_record
from apps.common.db import fetch_one
from apps.common.errors import ApplicationError, Conflict, NotFound
from apps.common.pricing import model_cost, month_spend
from apps.common.request_context import get_request_id
from apps.killswitch.constants import MemoryReads
from apps.killswitch.freeze import frozen_reads
from apps.killswitch.services import kill_in_force
from apps.policy.evaluation import PolicyRequest, current_snapshot, policy_evaluate
from apps.registry.constants import AgentStatus, MemoryAccess, MemoryClass, RiskClass
from apps.registry.models import Agent, MemoryStore, Tool

from . import services as runtime_services
from .constants import (
    IDEMPOTENCY_TTL_SECONDS,
    READ_ACTIONS,
    RISK_WEIGHTS,
    Action,
    BudgetEdge,
    BudgetKind,
    BudgetScope,
    Disposition,
    Reason,
    RunState,
)
from .counters import Counter, CounterStoreUnavailable, Reservation, counter_store
from .generation import budget_cache_token
from .ledger import ledger_state
from .models import AgentCredential, Budget, BudgetLedgerEntry, Decision, Run

logger = logging.getLogger(__name__)

BREAKER_THRESHOLD = 5  # the 5th identical call within the window is refused
BREAKER_WINDOW_SECONDS = 60
BUDGET_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class DecisionRequest:
    action: str
    tool: str = ""
    tool_action: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    model: str = ""
    estimated_input_tokens: int = 0
    estimated_output_tokens: int = 0
    estimated_cost_usd: Decimal | None = None
    store: str = ""
    agent: str = ""
    idempotency_key: str = ""
    approval: str = ""  # the approval request this step comes back with, if any
    preview: dict[str, Any] | None = None  # what would change, for the approver (diffs.py)

    @property
    def target(self) -> str:
        return self.tool or self.model or self.store or self.agent

    @cached_property
    def arguments_sha256(self) -> str:
        """Of the canonical JSON: the circuit breaker's key and the recorded fingerprint."""
        return _arguments_hash(self.arguments) if self.arguments else ""


@dataclass
class Outcome:
    disposition: str
    reasons: list[str]
    reasoning: str
    policies: list[str] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)
    modified: dict[str, Any] | None = None
    charges: list[tuple[Budget, str, Decimal]] = field(default_factory=list)
    retry_after: int | None = None
    repeated: bool = False  # answers a retry: the key belongs to the first attempt's row
    approval: ApprovalRequest | None = None  # the request an ask opened, or the one used up


def _deny(reason: str, reasoning: str, **extra: Any) -> Outcome:
    return Outcome(Disposition.DENY, [reason], reasoning, **extra)


# --- caches (per process; nothing here is rebuilt per request) -------------------------------


@dataclass(frozen=True)
class ToolContract:
    """What the pipeline needs of a tool, with its input schema compiled once."""

    pk: int
    slug: str
    risk_class: str
    approval_required: bool
    rate_limit_per_minute: int | None
    cost_per_call_usd: Decimal  # what a spend budget is charged per call; 0 charges nothing
    data_classes: tuple[str, ...]
    validator: Draft202012Validator


# Tool contracts live as long as the policy snapshot they were read under: the snapshot is
# rebuilt whenever the registry changes (apps/policy), and these are dropped with it.
_contracts: dict[str, ToolContract | None] = {}
_contracts_snapshot: object = None
_budgets: dict[int, tuple[float, list[Budget]]] = {}
_budgets_token: object = None


def _tool_contract(slug: str) -> ToolContract | None:
    global _contracts_snapshot
    snapshot = current_snapshot()
    if snapshot is not _contracts_snapshot:
        _contracts.clear()
        _contracts_snapshot = snapshot
    if slug not in _contracts:
        tool = Tool.objects.filter(slug=slug).prefetch_related("data_classes").first()
        _contracts[slug] = (
            ToolContract(
                pk=tool.pk,
                slug=tool.slug,
                risk_class=tool.risk_class,
                approval_required=tool.approval_required,
                rate_limit_per_minute=tool.rate_limit_per_minute,
                cost_per_call_usd=tool.cost_per_call_usd,
                data_classes=tuple(sorted(dc.slug for dc in tool.data_classes.all())),
                validator=Draft202012Validator(tool.input_schema or {}),
            )
            if tool
            else None
        )
    return _contracts[slug]


def _budgets_for(agent: Agent) -> list[Budget]:
    global _budgets_token
    token = budget_cache_token()  # budget writes bump it: seen here at once, elsewhere within 1 s
    if token != _budgets_token:
        _budgets.clear()
        _budgets_token = token
    cached = _budgets.get(agent.pk)
    if cached and time.monotonic() - cached[0] < BUDGET_CACHE_SECONDS:
        return cached[1]
    over = Q(agent=agent) | Q(scope=BudgetScope.DEPARTMENT_MONTH, department_id=agent.department_id)
    if agent.team_id is not None:
        over |= Q(scope=BudgetScope.TEAM_MONTH, team_id=agent.team_id)
    budgets = list(Budget.objects.filter(enabled=True).filter(over).select_related("team"))
    _budgets[agent.pk] = (time.monotonic(), budgets)
    return budgets


def forget_caches() -> None:
    global _contracts_snapshot, _budgets_token
    _contracts.clear()
    _contracts_snapshot = None
    _budgets_token = None
    _budgets.clear()
    runtime_services.forget_runs()
    gates.forget_gates()


# --- the pipeline ----------------------------------------------------------------------------


class _Repeated(Exception):
    """This request's Idempotency-Key already reserved its budgets: answer as the first time."""


def decide(*, run: Run, request: DecisionRequest) -> Decision:
    """Answer one governed step of ``run`` and record the answer before returning it.

    ``run`` may come from a per-process cache (``run_authenticate(recheck=False)``): the row
    is recorded only if the run is still live then (running, token unexpired, credential not
    revoked, agent active). If it is not, the run is read again and the step decided again on
    what it is now, which is a deny. Agent and department budgets may then count that one step
    twice: the safe side.

    A request that repeats an earlier one's Idempotency-Key (an SDK retrying after a timeout)
    gets that earlier decision back and is charged nothing more — unless the run stopped in
    between (a kill switch): then the retry is decided again, which is a deny.
    """
    began = time.perf_counter()
    answer = _answer(run, request)
    only_if_live = True
    if isinstance(answer, Decision):
        # A retry gets its first answer only while the run is live: one killed in between is
        # refused the step (read afresh, so no cached run lets it through).
        if answer.disposition == Disposition.DENY or (
            runtime_services.run_refresh(run) and _is_live(run)
        ):
            return answer
        answer = _answer(run, request)  # the run as it was just read: a deny
        if isinstance(answer, Decision):
            return answer
        only_if_live = False  # just found not live: the deny is recorded as it is
    decision = _record(run, request, answer, began, only_if_live=only_if_live)
    if decision is None:
        runtime_services.run_refresh(run)
        answer = _answer(run, request)
        if isinstance(answer, Decision):
            return answer
        decision = _record(run, request, answer, began, only_if_live=False)
    assert decision is not None  # recorded unconditionally (or spooled)
    if answer.approval is not None:
        used = answer.disposition != Disposition.ASK
        approvals.approval_attach_decision(
            approval=answer.approval, decision_id=decision.pk, used=used
        )
        decision.approval = answer.approval  # type: ignore[attr-defined]  # for the answer
    return decision


def _answer(run: Run, request: DecisionRequest) -> Outcome | Decision:
    """The pipeline's outcome, failing closed on a store that is down; for a repeated request,
    the first answer (or a ``defer`` while that is still being recorded)."""
    try:
        return _pipeline(run, request)
    except CounterStoreUnavailable as exc:
        return _unavailable(run, request, f"The budget store is unreachable ({exc}).")
    except DatabaseError as exc:  # e.g. the policy snapshot's freshness check
        return _unavailable(run, request, f"The database is unreachable ({exc}).")
    except _Repeated:
        first = _first_answer(run, request.idempotency_key)
        if first is not None:
            return first
        return Outcome(
            Disposition.DEFER,
            [Reason.DECISION_PENDING],
            "The first attempt of this request is still being answered; ask again.",
            retry_after=1,
            repeated=True,
        )


def _first_answer(run: Run, key: str) -> Decision | None:
    return (
        Decision.objects.filter(run=run, idempotency_key=key)
        .exclude(disposition=Disposition.DEFER)
        .order_by("id")
        .first()
    )


def _pipeline(run: Run, request: DecisionRequest) -> Outcome:
    agent = run.agent
    if run.state == RunState.KILLED:
        return _deny(Reason.RUN_KILLED, "A kill switch stopped this run.")
    if run.state != RunState.RUNNING:
        return _deny(Reason.RUN_NOT_RUNNING, f"The run is {run.state}.")
    if run.credential is None or run.credential.revoked_at is not None:
        return _deny(Reason.RUN_NOT_RUNNING, "The credential behind this run was revoked.")
    if run.token_expires_at <= timezone.now():
        return _deny(Reason.RUN_NOT_RUNNING, "The run's token has expired.")
    if agent.status != AgentStatus.ACTIVE:
        return _deny(Reason.AGENT_NOT_ACTIVE, f"{agent.slug} is {agent.status}.")
    if run.environment not in agent.environments:
        return _deny(
            Reason.ENVIRONMENT_NOT_ALLOWED, f"{agent.slug} may no longer run in {run.environment}."
        )
    if request.action == Action.TOOL_INVOKE:
        return _tool_invoke(run, request)
    if request.action == Action.MODEL_CALL:
        return _model_call(run, request)
    if request.action in (Action.MEMORY_READ, Action.MEMORY_WRITE):
        return _memory(run, request)
    return _delegate(run, request)


def _tool_invoke(run: Run, request: DecisionRequest) -> Outcome:
    agent = run.agent
    tool = _tool_contract(request.tool)
    if tool is None:
        return _deny(Reason.TOOL_UNKNOWN, f"No tool {request.tool!r} is registered.")
    entry = run.envelope.get("tools", {}).get(tool.slug)
    if entry is None:
        return _deny(
            Reason.TOOL_NOT_GRANTED,
            f"{agent.slug} holds no grant of {tool.slug} in {run.environment} for this run.",
        )
    if request.tool_action not in entry["actions"]:
        return _deny(
            Reason.ACTION_NOT_GRANTED,
            f"The grant of {tool.slug} allows {', '.join(entry['actions'])}, "
            f"not {request.tool_action!r}.",
        )
    if entry.get("expires_at") and datetime.fromisoformat(entry["expires_at"]) <= timezone.now():
        return _deny(Reason.GRANT_EXPIRED, f"The grant of {tool.slug} has expired.")
    # A grant revoked since the run started is refused by the policy stage: the registry's
    # grants compile to the Cedar permits, and that set follows every registry change.

    errors = sorted(tool.validator.iter_errors(request.arguments), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(arguments)"
        return _deny(Reason.ARGUMENTS_INVALID, f"Argument {where}: {first.message}")
    violation = _constraint_violation(entry.get("constraints") or {}, request.arguments)
    if violation:
        return _deny(Reason.CONSTRAINT_VIOLATED, violation)

    is_read = request.tool_action in READ_ACTIONS
    if agent.autonomy_level == 0 and not is_read:
        return _deny(Reason.AUTONOMY_READ_ONLY, f"{agent.slug} is L0: it may only read.")

    risk, gate = gates.step_gate(
        agent_id=agent.pk, tool_id=tool.pk, tool_risk=tool.risk_class, action=request.tool_action
    )
    if gate.outcome == GateOutcome.FORBID:
        return _deny(
            Reason.RISK_FORBIDDEN,
            f"{tool.slug}.{request.tool_action} is {risk} risk, and {risk} steps are forbidden"
            f"{' for ' + agent.slug if gate.overridden_for_agent else ''}.",
        )
    policy = _policy(
        run,
        "tool.invoke",
        "Tool",
        tool.slug,
        {
            "tool_action": request.tool_action,
            "risk_class": risk,
            "data_classes": list(tool.data_classes),
            "amount": _amount(request.arguments),
        },
    )
    if not policy.allowed:
        return _deny(Reason.POLICY_DENIED, _policy_text(policy), policies=policy.policies)

    approved: ApprovalRequest | None = None
    why = _approval_gate(agent.autonomy_level, tool, is_read, risk, gate)
    if why:
        step = _approval_step(run, request, tool, risk, gate, why, policy.policies)
        if isinstance(step, Outcome):
            return step
        approved = step

    args_hash = request.arguments_sha256 or NO_ARGUMENTS_SHA256

    def circuit_alert() -> None:
        audit_record(
            actor=Actor.system("circuit-breaker"),
            action="runtime.circuit.opened",
            target_type="run",
            target_id=str(run.pk),
            target_repr=str(run),
            after={"tool": tool.slug, "arguments_sha256": args_hash},
            message=f"{tool.slug} called {BREAKER_THRESHOLD} times with the same arguments",
        )

    guards = [
        Guard(
            Counter(
                key=f"tether:breaker:{run.pk}:{tool.slug}:{args_hash}",
                amount=1,
                limit=BREAKER_THRESHOLD - 1,
                ttl=BREAKER_WINDOW_SECONDS,
            ),
            Reason.CIRCUIT_OPEN,
            f"{tool.slug} was called {BREAKER_THRESHOLD} times with the same arguments within "
            f"{BREAKER_WINDOW_SECONDS} s: the circuit breaker stopped the loop.",
            on_refusal=circuit_alert,
        )
    ]
    if tool.rate_limit_per_minute:
        guards.append(
            Guard(
                Counter(
                    key=f"tether:rate:{agent.pk}:{tool.pk}:{int(time.time() // 60)}",
                    amount=1,
                    limit=tool.rate_limit_per_minute,
                    ttl=120,
                ),
                Reason.RATE_LIMITED,
                f"{tool.slug} allows {tool.rate_limit_per_minute} calls a minute per agent; "
                "ask again when the minute is over.",
                defer_seconds=60 - int(time.time()) % 60,
            )
        )
    amounts: dict[str, tuple[float, str, str]] = {
        BudgetKind.TOOL_CALLS: (1, "fixed", ""),
        BudgetKind.RISK: (RISK_WEIGHTS[tool.risk_class], "fixed", ""),
        BudgetKind.SCOPE: (1, "distinct", tool.slug),
        BudgetKind.RETRIES: (1, "repeat", ""),
        # The tool's declared cost per call; a free tool's 0 is no charge (see _reserve).
        BudgetKind.SPEND: (float(tool.cost_per_call_usd), "fixed", ""),
    }
    outcome = _reserve(run, guards, amounts, policy.policies, key=request.idempotency_key)
    if approved is not None and outcome.disposition == Disposition.ALLOW:
        if not approvals.approval_claim(approval=approved):
            return _deny(
                Reason.APPROVAL_USED,
                f"Approval {approved.pk} was used by another request a moment ago.",
                policies=policy.policies,
            )
        outcome.reasons.append(Reason.APPROVED)
        outcome.reasoning = f"Allowed against approval {approved.pk} (now used up)."
        outcome.approval = approved
    return outcome


def _step_hash(request: DecisionRequest) -> str:
    return request.arguments_sha256 or NO_ARGUMENTS_SHA256


def _approval_step(
    run: Run,
    request: DecisionRequest,
    tool: ToolContract,
    risk: str,
    gate: gates.Gate,
    why: str,
    policies: list[str],
) -> Outcome | ApprovalRequest:
    """A gated step: the approved request it may use, or the answer that stops it here.

    Coming back with ``approval``, that request must be this run's, for this very tool,
    action and arguments, approved, unused and unexpired; anything else is a deny that says
    which. Coming back without one, an approved, unused request for the same step is used;
    failing that, the step's pending request (opened now if there is none) makes it an ask.
    """
    step_hash = _step_hash(request)
    now = timezone.now()
    if request.approval:
        approval = (
            ApprovalRequest.objects.filter(pk=request.approval, run=run)
            .select_related("tool", "agent")
            .first()
        )
        if approval is None:
            return _deny(
                Reason.APPROVAL_INVALID,
                f"No approval request {request.approval} belongs to this run.",
                policies=policies,
            )
        if (
            approval.tool_id != tool.pk
            or approval.tool_action != request.tool_action
            or approval.arguments_sha256 != step_hash
        ):
            return _deny(
                Reason.APPROVAL_MISMATCH,
                f"Approval {approval.pk} was given for {approval.tool.slug}."
                f"{approval.tool_action} with other arguments; this request differs from "
                "what was approved.",
                policies=policies,
            )
        return _approval_answered(run, approval, why, policies, now)
    approved = (
        ApprovalRequest.objects.filter(
            run=run,
            tool_id=tool.pk,
            tool_action=request.tool_action,
            arguments_sha256=step_hash,
            status=ApprovalStatus.APPROVED,
            used_at__isnull=True,
            expires_at__gt=now,
        )
        .select_related("tool", "agent")
        .first()
    )
    if approved is not None:
        return approved
    opened = approvals.approval_open(
        run=run,
        tool=tool,
        tool_action=request.tool_action,
        arguments=request.arguments,
        arguments_sha256=step_hash,
        reason=request.reason,
        preview=request.preview,
        risk_class=risk,
        gate=gate,
        gate_reasoning=why,
        policies=policies,
    )
    return _asking(run, opened, why, policies)


def _asking(run: Run, approval: ApprovalRequest, why: str, policies: list[str]) -> Outcome:
    return Outcome(
        Disposition.ASK,
        [Reason.APPROVAL_REQUIRED],
        f"{why} Waiting for approval {approval.pk} "
        f"({approval.approvals_required} approver{'s' if approval.approvals_required > 1 else ''}).",
        policies=policies,
        budgets=_budget_view(run, []),
        approval=approval,
    )


def _approval_answered(
    run: Run, approval: ApprovalRequest, why: str, policies: list[str], now: datetime
) -> Outcome | ApprovalRequest:
    """What a step that comes back with its own approval request gets, by that request's state."""
    approvals.approval_expire_if_due(approval=approval, now=now)
    status = approval.status
    if status == ApprovalStatus.PENDING:
        return _asking(run, approval, why, policies)
    if status == ApprovalStatus.APPROVED:
        if approval.used_at is not None:
            return _deny(
                Reason.APPROVAL_USED,
                f"Approval {approval.pk} was used already; an approval is good for one step.",
                policies=policies,
            )
        if approval.expires_at <= now:
            return _deny(
                Reason.APPROVAL_EXPIRED,
                f"Approval {approval.pk} expired before the step came back; ask again.",
                policies=policies,
            )
        return approval
    if status == ApprovalStatus.EXPIRED:
        if approval.on_expiry == ExpiryOutcome.PAUSE:
            return Outcome(
                Disposition.DEFER,
                [Reason.APPROVAL_EXPIRED],
                f"Approval {approval.pk} expired unanswered; the run pauses. Ask again later "
                "to raise a new request.",
                policies=policies,
                retry_after=60,
                approval=approval,
            )
        return _deny(
            Reason.APPROVAL_EXPIRED,
            f"Approval {approval.pk} expired: nobody answered in time.",
            policies=policies,
            approval=approval,
        )
    outcomes: dict[str, tuple[str, str]] = {
        ApprovalStatus.REJECTED: (Reason.APPROVAL_REJECTED, "was rejected"),
        ApprovalStatus.CHANGES_REQUESTED: (
            Reason.APPROVAL_CHANGES_REQUESTED,
            "came back with changes requested",
        ),
    }
    reason, verb = outcomes.get(status, (Reason.APPROVAL_CANCELLED, "was cancelled"))
    feedback = f": {approval.feedback}" if approval.feedback else "."
    return _deny(
        reason, f"Approval {approval.pk} {verb}{feedback}", policies=policies, approval=approval
    )


def _model_call(run: Run, request: DecisionRequest) -> Outcome:
    policy = _policy(run, "model.call", "Model", request.model, {})
    if not policy.allowed:
        return _deny(Reason.POLICY_DENIED, _policy_text(policy), policies=policy.policies)
    tokens = request.estimated_input_tokens + request.estimated_output_tokens
    # Spend is reserved at Tether's price of the estimate (the price finance sees; an unpriced
    # model at the worst case), or the agent's own estimate where that is higher.
    priced = model_cost(
        model=request.model,
        input_tokens=request.estimated_input_tokens,
        output_tokens=request.estimated_output_tokens,
    ).usd
    spend = max(priced, request.estimated_cost_usd or Decimal(0))
    amounts: dict[str, tuple[float, str, str]] = {
        BudgetKind.TOKENS: (tokens, "fixed", ""),
        BudgetKind.SPEND: (float(spend), "fixed", ""),
    }
    return _reserve(
        run, [], amounts, policy.policies, key=request.idempotency_key, model=request.model
    )


def _memory(run: Run, request: DecisionRequest) -> Outcome:
    store = MemoryStore.objects.filter(slug=request.store).first()
    if store is None:
        return _deny(Reason.MEMORY_NOT_BOUND, f"No memory store {request.store!r} is registered.")
    writing = request.action == Action.MEMORY_WRITE
    frozen = frozen_reads(store.slug)
    if frozen is not None and (writing or frozen == MemoryReads.DENY):
        return _deny(
            Reason.MEMORY_FROZEN,
            f"A kill switch froze {store.slug}: no {'writes' if writing else 'reads'} until it "
            "is released.",
        )
    if writing and store.store_class == MemoryClass.FORBIDDEN:
        return _deny(Reason.MEMORY_FORBIDDEN, f"{store.slug} is a forbidden store: never written.")
    access = run.envelope.get("memory", {}).get(store.slug)
    if store.store_class == MemoryClass.WORKING and access is None:
        access = MemoryAccess.READ_WRITE  # working memory lives and dies with the run
    if access is None:
        return _deny(Reason.MEMORY_NOT_BOUND, f"{run.agent.slug} is not bound to {store.slug}.")
    if writing and access != MemoryAccess.READ_WRITE:
        return _deny(
            Reason.MEMORY_WRITE_NOT_GRANTED,
            f"{run.agent.slug} may read {store.slug} but not write it ({store.store_class}).",
        )
    policy = _policy(run, request.action, "MemoryStore", store.slug, {})
    if not policy.allowed:
        return _deny(Reason.POLICY_DENIED, _policy_text(policy), policies=policy.policies)
    return Outcome(
        Disposition.ALLOW,
        [Reason.ALLOWED],
        f"{'Write to' if writing else 'Read of'} {store.slug} allowed.",
        policies=policy.policies,
    )


def _delegate(run: Run, request: DecisionRequest) -> Outcome:
    if request.agent not in run.agent.delegates_to:
        return _deny(
            Reason.DELEGATION_NOT_ALLOWED,
            f"{run.agent.slug} may not start {request.agent!r} as a sub-agent.",
        )
    child = Agent.objects.filter(slug=request.agent).first()
    if child is None or child.status != AgentStatus.ACTIVE:
        return _deny(Reason.DELEGATION_NOT_ALLOWED, f"{request.agent!r} is not an active agent.")
    kill = kill_in_force(child)
    if kill is not None:
        return _deny(
            Reason.DELEGATION_NOT_ALLOWED,
            f"{child.slug} is stopped by a kill switch ({kill.scope} {kill.target_name}).",
        )
    policy = _policy(run, "delegate", "Agent", child.slug, {})
    if not policy.allowed:
        return _deny(Reason.POLICY_DENIED, _policy_text(policy), policies=policy.policies)
    return Outcome(
        Disposition.ALLOW,
        [Reason.ALLOWED],
        f"{child.slug} may start as a sub-agent with a scope no wider than this run's.",
        policies=policy.policies,
    )


# --- stages ----------------------------------------------------------------------------------


def _approval_gate(
    level: int, tool: ToolContract, is_read: bool, risk: str, gate: gates.Gate
) -> str:
    """Why a person must approve this call first, or '' (docs/autonomy-levels.md,
    docs/approvals.md). ``risk`` is the step's class after the risk mappings."""
    if tool.approval_required:
        return f"Every call of {tool.slug} needs a person's approval."
    if risk == RiskClass.CRITICAL:
        return f"{tool.slug} is critical here: it never runs without approval."
    if gate.outcome == GateOutcome.ASK:
        whose = "this agent's" if gate.overridden_for_agent else "the organisation's"
        return f"{risk.title()}-risk steps ask a person first ({whose} gate)."
    if level == 1 and not is_read:
        return "An L1 agent asks before every change."
    if level == 2 and risk == RiskClass.HIGH:
        return f"An L2 agent asks before high-risk actions such as {tool.slug}."
    return ""


def _constraint_violation(constraints: dict[str, Any], arguments: dict[str, Any]) -> str:
    """``max_<field>``: a ceiling on a numeric argument; ``allowed_<field>``: a list of values."""
    for key, bound in constraints.items():
        name = key.removeprefix("max_").removeprefix("allowed_")
        if name not in arguments:
            continue
        value = arguments[name]
        if key.startswith("max_") and isinstance(value, int | float) and value > bound:
            return f"Argument {name} = {value} is over the grant's limit of {bound}."
        if key.startswith("allowed_") and isinstance(bound, list) and value not in bound:
            return f"Argument {name} = {value!r} is not one of {bound}."
    return ""


def _amount(arguments: dict[str, Any]) -> int | None:
    value = arguments.get("amount")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _arguments_hash(arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class _PolicyAnswer:
    allowed: bool
    policies: list[str]
    errors: list[str]


def _policy(
    run: Run, action: str, resource_type: str, resource: str, extra: dict[str, Any]
) -> _PolicyAnswer:
    context = {
        "environment": run.environment,
        "on_behalf_of": run.on_behalf_of.get_username() if run.on_behalf_of else "",
        "delegated": run.parent_id is not None,
        "hour": timezone.now().hour,
        **{k: v for k, v in extra.items() if v is not None},
    }
    result = policy_evaluate(
        PolicyRequest(
            principal=run.agent.slug,
            action=action,
            resource_type=resource_type,
            resource=resource,
            context=context,
        )
    )
    return _PolicyAnswer(result.allowed, list(result.policies), list(result.errors))


def _policy_text(policy: _PolicyAnswer) -> str:
    if policy.errors:
        return "Policy evaluation failed, so the request is denied: " + "; ".join(policy.errors)
    if policy.policies:
        return "Denied by policy " + ", ".join(policy.policies) + "."
    return "No policy permits this (default deny)."


def _period(run: Run | None, scope: str) -> tuple[str, int]:
    """The budget period's key and how long its counter lives (ttl seconds)."""
    if scope == BudgetScope.RUN:
        assert run is not None  # a run budget's period is its run
        return f"run:{run.pk}", 2 * 86400
    day = _today()
    return (day, 2 * 86400) if scope == BudgetScope.AGENT_DAY else (day[:7], 62 * 86400)


def _today() -> str:
    """Today's date (UTC) as YYYY-MM-DD, formatted once per second rather than per budget."""
    global _day
    second = int(time.time())
    if _day[0] != second:
        _day = (second, timezone.now().strftime("%Y-%m-%d"))  # one tuple: swapped whole
    return _day[1]


_day: tuple[int, str] = (0, "")


IDEMPOTENCY_PREFIX = "tether:idem:"
NO_ARGUMENTS_SHA256 = hashlib.sha256(b"{}").hexdigest()  # the breaker's key for a bare call


def _idempotency_key(run: Run, key: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{run.pk}:{key}"


def _repeated() -> None:
    raise _Repeated


def _idempotency_guard(run: Run, key: str) -> Guard:
    """Set once per (run, key) together with the budgets, so a retry cannot charge them twice;
    refused, it answers as the first attempt did (``decide``)."""
    counter = Counter(
        key=_idempotency_key(run, key), amount=1, limit=1, ttl=IDEMPOTENCY_TTL_SECONDS
    )
    return Guard(counter, Reason.DECISION_PENDING, "", on_refusal=_repeated)


def _budget_key(budget: Budget, period: str) -> str:
    return f"tether:budget:{budget.pk}:{period}"


@dataclass(frozen=True)
class Guard:
    """A counter that is not a budget (circuit breaker, rate limit) and what its refusal says."""

    counter: Counter
    reason: str
    reasoning: str
    on_refusal: Any = (
        None  # called before answering: raises an alert, or raises to answer otherwise
    )
    defer_seconds: int | None = None  # refusal is ``defer`` (ask again then), not ``deny``


@dataclass(frozen=True)
class _Charge:
    budget: Budget
    period: str
    ttl: int
    amount: float
    rule: str
    member: str

    def counter(self, *, enforce: bool) -> Counter:
        return Counter(
            key=_budget_key(self.budget, self.period),
            amount=self.amount,
            limit=float(self.budget.limit),
            enforce=enforce,
            ttl=self.ttl,
            rule=self.rule,
            member=self.member,
            ledger=(self.budget.pk, self.period),  # a lost counter is rebuilt from the ledger
        )


def _reserve(
    run: Run,
    guards: list[Guard],
    amounts: dict[str, tuple[float, str, str]],
    policies: list[str],
    *,
    key: str,
    model: str = "",
) -> Outcome:
    """Reserve the guards and every applicable budget in one atomic call, then apply edges.

    ``amounts`` maps a budget kind to (amount, rule, member) for this step (see counters.py);
    ``key`` is the request's Idempotency-Key, if it has one.
    """
    if key:
        # After the caller's guards: the circuit breaker must stay the first counter.
        guards = [*guards, _idempotency_guard(run, key)]
    budgets = _budgets_for(run.agent)
    spend_now = amounts.get(BudgetKind.SPEND, (0.0, "fixed", ""))[0]
    over_spent, spent = _over_spent(budgets, spend_now)
    if over_spent is not None:
        edge = over_spent.edge
        reasoning = (
            f"Budget {over_spent.name!r}: ${spent:,.2f} of ${over_spent.limit:,.2f} spent this "
            f"month by {over_spent.over_name}"
        )
        cannot_degrade = not (model and over_spent.degrade_to_model)
        if edge == BudgetEdge.STOP or (edge == BudgetEdge.DEGRADE and cannot_degrade):
            return _deny(
                Reason.BUDGET_EXHAUSTED, reasoning + "; no new spend until it resets.",
                policies=policies,
            )  # fmt: skip
        if edge == BudgetEdge.ASK:
            return Outcome(
                Disposition.ASK, [Reason.BUDGET_ASK],
                reasoning + "; a person must approve going over it.", policies=policies,
            )  # fmt: skip
    elapsed = (timezone.now() - run.started_at).total_seconds()
    for budget in budgets:
        over_time = budget.kind == BudgetKind.WALL_TIME and elapsed > float(budget.limit)
        if over_time and budget.edge == BudgetEdge.STOP:
            return _deny(
                Reason.BUDGET_EXHAUSTED,
                f"Budget {budget.name!r}: the run has used {elapsed:.0f} s of {budget.limit} s.",
                policies=policies,
            )
    charges = []
    for budget in budgets:
        if budget.holds_to_recorded_spend:
            continue  # held to the cost rollups above, never reserved
        amount, rule, member = amounts.get(budget.kind, (0.0, "fixed", ""))
        if amount or rule != "fixed":
            period, ttl = _period(run, budget.scope)
            charges.append(_Charge(budget, period, ttl, float(amount), rule, member))

    degraded: set[int] = set()
    if over_spent is not None and over_spent.edge == BudgetEdge.DEGRADE:
        degraded.add(over_spent.pk)
    while True:
        counters = [g.counter for g in guards] + [
            c.counter(enforce=c.budget.edge != BudgetEdge.CONTINUE and c.budget.pk not in degraded)
            for c in charges
        ]
        reservation = counter_store().reserve(counters) if counters else Reservation(True, [], [])
        if reservation.granted:
            break
        first = reservation.refused[0]
        if first < len(guards):
            guard = guards[first]
            if guard.on_refusal:
                guard.on_refusal()
            if guard.defer_seconds is not None:
                return Outcome(
                    Disposition.DEFER,
                    [guard.reason],
                    guard.reasoning,
                    policies=policies,
                    retry_after=guard.defer_seconds,
                )
            return _deny(guard.reason, guard.reasoning, policies=policies)
        budget = charges[first - len(guards)].budget
        if budget.edge == BudgetEdge.DEGRADE and model and budget.degrade_to_model:
            degraded.add(budget.pk)
            continue
        if budget.edge == BudgetEdge.ASK:
            return Outcome(
                Disposition.ASK,
                [Reason.BUDGET_ASK],
                f"Budget {budget.name!r} is spent; a person must approve going over it.",
                policies=policies,
                budgets=_budget_view(run, budgets),
            )
        return Outcome(
            Disposition.DENY,
            [Reason.BUDGET_EXHAUSTED],
            f"Budget {budget.name!r} ({budget.get_kind_display()}, limit {budget.limit}) is exhausted.",
            policies=policies,
            budgets=_budget_view(run, budgets),
        )

    values = dict(
        zip((c.budget.pk for c in charges), reservation.values[len(guards) :], strict=True)
    )
    view = _budget_view(run, [b for b in budgets if b.pk not in values], known=values)
    reasons: list[str] = [Reason.ALLOWED]
    if any(
        values.get(b.pk, 0.0) > float(b.limit) and b.edge == BudgetEdge.CONTINUE for b in budgets
    ) or (over_spent is not None and over_spent.edge == BudgetEdge.CONTINUE):
        reasons.append(Reason.BUDGET_OVER_CONTINUE)
    ledger = [(c.budget, c.period, Decimal(str(c.amount))) for c in charges if c.amount]
    if degraded:
        target = next(b for b in budgets if b.pk in degraded)
        return Outcome(
            Disposition.MODIFY,
            [Reason.BUDGET_DEGRADED],
            f"Budget {target.name!r} is spent: use {target.degrade_to_model} instead of {model}.",
            policies=policies,
            budgets=view,
            modified={"model": target.degrade_to_model},
            charges=ledger,
        )
    return Outcome(
        Disposition.ALLOW,
        reasons,
        "Allowed: granted, valid, permitted and within budget.",
        policies=policies,
        budgets=view,
        charges=ledger,
    )


def _recorded_spend(budget: Budget) -> Decimal:
    """What the department or team of a monthly spend budget has spent this month, as the cost
    rollups record it (apps/costs): the number finance sees."""
    if budget.team is not None:
        return month_spend(department_id=budget.team.department_id, team_id=budget.team_id)
    return month_spend(department_id=budget.department_id or 0)


def _over_spent(budgets: list[Budget], spend_now: float) -> tuple[Budget | None, Decimal]:
    """The first monthly spend budget this step's spend would take over its limit, and what
    was spent; a step that spends nothing never is."""
    if spend_now <= 0:
        return None, Decimal(0)
    for budget in budgets:
        if budget.holds_to_recorded_spend:
            spent = _recorded_spend(budget)
            if spent + Decimal(str(spend_now)) > budget.limit:
                return budget, spent
    return None, Decimal(0)


def _view_entry(budget: Budget, used: float) -> dict[str, Any]:
    limit = float(budget.limit)
    return {"kind": budget.kind, "limit": limit, "used": used, "remaining": max(limit - used, 0.0)}


def _budget_view(
    run: Run, budgets: list[Budget], known: dict[int, float] | None = None
) -> dict[str, Any]:
    """Each budget's limit, use and remainder; ``known`` values save reading them again."""
    known = dict(known or {})
    everything = _budgets_for(run.agent)
    wanted = [
        b for b in (budgets if budgets or known else everything) if b.kind != BudgetKind.WALL_TIME
    ]
    missing = [b for b in wanted if b.pk not in known]
    if missing:
        try:
            known.update(budget_used(missing, run))
        except CounterStoreUnavailable:
            known.update((b.pk, 0.0) for b in missing)
    return {
        b.name: _view_entry(b, known[b.pk])
        for b in everything
        if b.pk in known and b.kind != BudgetKind.WALL_TIME
    }


def budget_used(budgets: list[Budget], run: Run | None = None) -> dict[int, float]:
    """What each budget has used in its current period (run budgets only with ``run``).

    The hot counter's value; where the counter is missing (Redis lost it, and nothing has
    charged the budget since, which would rebuild it) the ledger's sum, so a view never shows a
    spent budget as untouched. Raises ``CounterStoreUnavailable``.
    """
    used: dict[int, float] = {
        b.pk: float(_recorded_spend(b)) for b in budgets if b.holds_to_recorded_spend
    }
    keyed = [
        (b, _period(run, b.scope)[0])
        for b in budgets
        if (run is not None or b.scope != BudgetScope.RUN) and not b.holds_to_recorded_spend
    ]
    if not keyed:
        return used
    values = counter_store().read([_budget_key(b, period) for b, period in keyed])
    lost = [(b.pk, period) for (b, period), v in zip(keyed, values, strict=True) if v is None]
    try:
        ledger = ledger_state(lost) if lost else {}
    except DatabaseError as exc:
        raise CounterStoreUnavailable(f"the budget ledger is unreachable ({exc})") from exc
    for (budget, period), value in zip(keyed, values, strict=True):
        if value is None:
            state = ledger.get((budget.pk, period))
            value = float(state.total) if state else 0.0
        used[budget.pk] = value
    return used


def _unavailable(run: Run, request: DecisionRequest, why: str) -> Outcome:
    """A store Tether needs is down: deny, unless the agent's registered posture says otherwise."""
    posture = run.agent.failure_posture
    if posture == "fail_open":
        return Outcome(
            Disposition.ALLOW,
            [Reason.STORE_UNAVAILABLE, Reason.FAIL_OPEN],
            f"{why} The agent fails open.",
        )
    if (
        posture == "read_only"
        and request.action == Action.TOOL_INVOKE
        and request.tool_action in READ_ACTIONS
    ):
        return Outcome(
            Disposition.ALLOW,
            [Reason.STORE_UNAVAILABLE],
            f"{why} Reads continue (read-only posture).",
        )
    return _deny(Reason.STORE_UNAVAILABLE, f"{why} Failing closed.")


# --- recording -------------------------------------------------------------------------------


def _record(
    run: Run, request: DecisionRequest, outcome: Outcome, began: float, *, only_if_live: bool
) -> Decision | None:
    """Write the decision (and its ledger rows); None when ``only_if_live`` and the run is not.

    If the database refuses, the answer becomes a deny, kept in the local spool."""
    decision = Decision(
        created_at=timezone.now(),
        run=run,
        agent_id=run.agent_id,
        environment=run.environment,
        action=request.action,
        target=request.target[:200],
        tool_action=request.tool_action[:40],
        disposition=outcome.disposition,
        reasons=[str(r) for r in outcome.reasons],
        reasoning=outcome.reasoning,
        policies=outcome.policies,
        budgets=outcome.budgets,
        arguments_sha256=request.arguments_sha256,
        modified=outcome.modified,
        on_behalf_of_name=run.on_behalf_of.get_username() if run.on_behalf_of else "",
        request_id=get_request_id(),
        idempotency_key="" if outcome.repeated else request.idempotency_key,
        retry_after_seconds=outcome.retry_after,
    )
    decision.duration_us = int((time.perf_counter() - began) * 1_000_000)
    try:
        if not _write(run, decision, outcome.charges, only_if_live=only_if_live):
            return None
    except DatabaseError as exc:
        logger.error("decision not recorded, failing closed: %s", exc)
        decision.pk = None
        decision.disposition = Disposition.DENY
        decision.reasons = [Reason.STORE_UNAVAILABLE]
        decision.reasoning = "The decision could not be recorded, so it is denied."
        decision.modified = None
        decision.retry_after_seconds = None
        spool_decision(decision)
        if request.idempotency_key and outcome.charges:
            _release_idempotency(run, request.idempotency_key)
    return decision


def _release_idempotency(run: Run, key: str) -> None:
    """The first answer was never recorded: let a retry be decided afresh, not wait for it."""
    # If Redis is down too, the key expires on its own; a retry meanwhile is deferred.
    with contextlib.suppress(CounterStoreUnavailable):
        counter_store().adjust(_idempotency_key(run, key), -1)


def _write(
    run: Run, decision: Decision, charges: list[tuple[Budget, str, Decimal]], *, only_if_live: bool
) -> bool:
    """Insert the decision and its ledger rows together, or neither; False when ``only_if_live``
    and the run is no longer live (nothing is written then)."""
    if connection.vendor != "postgresql":  # the embedded default: check, then write
        if only_if_live and not (runtime_services.run_refresh(run) and _is_live(run)):
            return False
        with transaction.atomic():
            decision.save(force_insert=True)
            BudgetLedgerEntry.objects.bulk_create(
                BudgetLedgerEntry(budget=b, period_key=p, decision=decision, amount=a)
                for b, p, a in charges
            )
        return True
    # On PostgreSQL: one prepared statement (atomic by itself, one round trip) that checks the
    # run is live and writes the decision and its ledger rows only if it is.
    sql, fields = _insert_statement()
    params: list[Any] = [run.pk, decision.created_at]
    for f in fields:
        value = getattr(decision, f.attname)
        if isinstance(f, JSONField):  # sent as text and cast: orjson is several times faster
            params.append(None if value is None else orjson.dumps(value).decode())
        else:
            params.append(f.get_db_prep_save(value, connection))
    params += [
        not only_if_live,
        decision.created_at,
        [b.pk for b, _, _ in charges],
        [p for _, p, _ in charges],
        [a for _, _, a in charges],
    ]
    row = fetch_one(sql, params)
    if row is None:
        return False
    decision.pk = row[0]
    decision._state.adding = False
    return True


def _is_live(run: Run) -> bool:
    return (
        run.state == RunState.RUNNING
        and run.token_expires_at > timezone.now()
        and run.credential is not None
        and run.credential.revoked_at is None
        and run.agent.status == AgentStatus.ACTIVE
    )


@lru_cache(maxsize=1)
def _insert_statement() -> tuple[str, tuple[Any, ...]]:
    """``INSERT ... SELECT`` the decision if the run is live (or the third parameter says not to
    ask), and ``INSERT ... SELECT unnest(...)`` its ledger rows, in one statement."""
    fields = tuple(f for f in Decision._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    values = ", ".join("%s::jsonb" if isinstance(f, JSONField) else "%s" for f in fields)
    run, agent, credential = Run._meta, Agent._meta, AgentCredential._meta
    live = (
        f"SELECT 1 FROM {run.db_table} r JOIN {agent.db_table} a ON a.id = r.agent_id "
        f"JOIN {credential.db_table} c ON c.id = r.credential_id "
        f"WHERE r.id = %s AND r.state = '{RunState.RUNNING}' AND r.token_expires_at > %s "
        f"AND c.revoked_at IS NULL AND a.status = '{AgentStatus.ACTIVE}'"
    )
    ledger = BudgetLedgerEntry._meta.db_table
    sql = (
        f"WITH live AS ({live}), "
        f"d AS (INSERT INTO {Decision._meta.db_table} ({columns}) SELECT {values} "
        f"WHERE %s OR EXISTS (SELECT 1 FROM live) RETURNING id), "
        f"l AS (INSERT INTO {ledger} "
        f"(budget_id, period_key, decision_id, amount, reconciliation, created_at) "
        f"SELECT u.budget_id, u.period_key, d.id, u.amount, false, %s "
        f"FROM d, unnest(%s::bigint[], %s::text[], %s::numeric[]) AS u(budget_id, period_key, amount)) "
        f"SELECT id FROM d"
    )
    return sql, fields


def spool_path() -> Path:
    return Path(settings.VAR_DIR) / "spool" / "decisions.jsonl"


def spool_decision(decision: Decision) -> None:
    """Keep a decision the database refused on local disk (fsynced) until it can be replayed."""
    path = spool_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "created_at": decision.created_at.isoformat(),
        "run_id": str(decision.run_id) if decision.run_id else None,
        "agent_id": decision.agent_id,
        "environment": decision.environment,
        "action": decision.action,
        "target": decision.target,
        "tool_action": decision.tool_action,
        "disposition": decision.disposition,
        "reasons": decision.reasons,
        "reasoning": decision.reasoning,
        "policies": decision.policies,
        "budgets": decision.budgets,
        "arguments_sha256": decision.arguments_sha256,
        "on_behalf_of_name": decision.on_behalf_of_name,
        "request_id": decision.request_id,
        "idempotency_key": decision.idempotency_key,
        "retry_after_seconds": decision.retry_after_seconds,
        "duration_us": decision.duration_us,
    }
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def spool_replay() -> int:
    """Move spooled decisions into the database; the spool is truncated only after commit."""
    path = spool_path()
    if not path.exists():
        return 0
    working = path.with_suffix(".replaying")
    if not working.exists():
        path.rename(working)
    rows = [json.loads(line) for line in working.read_text().splitlines() if line.strip()]
    with transaction.atomic():
        Decision.objects.bulk_create(
            Decision(**{**row, "created_at": datetime.fromisoformat(row["created_at"])})
            for row in rows
        )
    working.unlink()
    return len(rows)


# --- usage -----------------------------------------------------------------------------------


@transaction.atomic
def usage_reconcile(
    *,
    run: Run,
    decision_id: int,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    provider: str = "",
) -> dict[str, Any]:
    """Replace a model call's estimated tokens and spend by what it really used.

    The spend is Tether's price of the tokens (apps/costs/prices.py), the same price that
    costs the call's spans for finance; an unpriced model is charged at the worst case.
    """
    decision = Decision.objects.select_for_update().filter(pk=decision_id, run=run).first()
    if decision is None:
        raise NotFound("No such decision in this run.")
    if decision.action != Action.MODEL_CALL or decision.disposition not in (
        Disposition.ALLOW,
        Disposition.MODIFY,
    ):
        raise ApplicationError("Only an allowed model call reports usage.")
    entries = list(decision.ledger.select_related("budget"))
    if any(e.reconciliation for e in entries):
        raise Conflict("Usage for this decision was already reported.")
    cost = model_cost(
        model=decision.modified_model or decision.target,
        provider=provider,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        at=decision.created_at,
    )
    actual: dict[str, Decimal | None] = {
        BudgetKind.TOKENS: Decimal(input_tokens + output_tokens),
        BudgetKind.SPEND: cost.usd,
    }
    for entry in entries:
        real = actual.get(entry.budget.kind)
        if real is None:
            continue
        delta = real - entry.amount
        counter_store().adjust(_budget_key(entry.budget, entry.period_key), float(delta))
        BudgetLedgerEntry.objects.create(
            budget=entry.budget,
            period_key=entry.period_key,
            decision=decision,
            amount=delta,
            reconciliation=True,
        )
    return _budget_view(run, [])
