"""Identity, runs and budgets: agent credentials, delegations, run start, heartbeat and
finish; creating, changing and deleting autonomy budgets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.constants import Role
from apps.accounts.models import Department, Team, User, slug_validator
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.db import fetch_one
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.common.tokens import IssuedToken, digest_matches, issue_token, parse_lookup
from apps.policy.evaluation import current_snapshot
from apps.registry.constants import AgentStatus
from apps.registry.models import CHANGE, Agent
from apps.registry.selectors import serving_version

from .constants import (
    BUDGET_DECIMAL_PLACES,
    BUDGET_LIMIT_MAX,
    BUDGET_MODEL_MAX,
    BUDGET_NAME_MAX,
    BUDGET_SLUG_MAX,
    BUDGETS_PER_OWNER_MAX,
    CREDENTIAL_KIND,
    DEGRADABLE_BUDGET_KINDS,
    RUN_TOKEN_KIND,
    TASK_MAX,
    WHOLE_BUDGET_KINDS,
    BudgetEdge,
    BudgetKind,
    BudgetScope,
    RunState,
)
from .generation import bump_budget_generation
from .models import AgentCredential, Budget, Delegation, Run

LAST_USED_RESOLUTION = timedelta(seconds=60)


class Unauthenticated(ApplicationError):
    code = "not_authenticated"
    http_status = 401


class RunKilledToken(Unauthenticated):
    """The 401 for the token of a run a kill switch stopped. Its own code lets an SDK tell a
    kill from any other refusal; ``run_id`` lets the agents' control socket say which kill."""

    code = "run_killed"

    def __init__(self, message: str, *, run_id: Any) -> None:
        super().__init__(message)
        self.run_id = run_id


def _agent_actor(agent: Agent) -> Actor:
    return Actor(type="agent", id=str(agent.pk), name=agent.slug)


# --- credentials -----------------------------------------------------------------------------


@transaction.atomic
def credential_issue(
    *, actor: User, agent: Agent, environment: str, name: str
) -> tuple[AgentCredential, IssuedToken]:
    """Issue an agent credential for one environment; the plaintext is returned once."""
    if not Agent.objects.for_user(actor, CHANGE).filter(pk=agent.pk).exists():
        raise NotPermitted("Only the agent's owner or an admin can issue its credentials.")
    if environment not in agent.environments:
        raise ApplicationError(
            f"{agent.slug} may not run in {environment!r}; it runs in "
            f"{', '.join(agent.environments) or 'no environment yet'}.",
            details={"environment": ["Not one of the agent's environments."]},
        )
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ApplicationError(
            "Name the credential (1-100 characters).", details={"name": ["Required."]}
        )
    issued = issue_token(CREDENTIAL_KIND)
    credential = AgentCredential.objects.create(
        agent=agent,
        environment=environment,
        name=name,
        lookup=issued.lookup,
        digest=issued.digest,
        created_by_name=actor.get_username(),
    )
    audit_record(
        actor=Actor.user(actor),
        action="runtime.credential.issued",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        after={"credential": credential.pk, "environment": environment, "name": name},
    )
    return credential, issued


@transaction.atomic
def credential_revoke(*, actor: User, credential: AgentCredential) -> None:
    """Revoke at once: the credential and every run token it minted stop working."""
    agent = credential.agent
    if not Agent.objects.for_user(actor, CHANGE).filter(pk=agent.pk).exists():
        raise NotPermitted("Only the agent's owner or an admin can revoke its credentials.")
    if credential.revoked_at is not None:
        return
    now = timezone.now()
    credential.revoked_at = now
    credential.save(update_fields=["revoked_at"])
    ended = Run.objects.filter(credential=credential, state=RunState.RUNNING).update(
        state=RunState.KILLED, ended_at=now, outcome="credential revoked"
    )
    audit_record(
        actor=Actor.user(actor),
        action="runtime.credential.revoked",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        after={"credential": credential.pk, "runs_ended": ended},
    )
    for run in Run.objects.filter(credential=credential, state=RunState.KILLED, ended_at=now):
        _cancel_approvals(run, "The credential behind the run was revoked.")


@transaction.atomic
def credential_rotate(
    *, actor: User, credential: AgentCredential
) -> tuple[AgentCredential, IssuedToken]:
    """Issue a successor for the same environment and revoke the old one."""
    new, issued = credential_issue(
        actor=actor,
        agent=credential.agent,
        environment=credential.environment,
        name=credential.name,
    )
    credential_revoke(actor=actor, credential=credential)
    credential.replaced_by = new
    credential.save(update_fields=["replaced_by"])
    return new, issued


def credential_authenticate(plaintext: str) -> AgentCredential:
    lookup = parse_lookup(plaintext, CREDENTIAL_KIND)
    credential = (
        AgentCredential.objects.select_related("agent").filter(lookup=lookup).first()
        if lookup
        else None
    )
    if credential is None or not digest_matches(plaintext, credential.digest):
        raise Unauthenticated("Invalid agent credential.")
    if credential.revoked_at is not None:
        raise Unauthenticated("This agent credential was revoked.")
    now = timezone.now()
    if credential.last_used_at is None or now - credential.last_used_at > LAST_USED_RESOLUTION:
        AgentCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential


# --- delegations -----------------------------------------------------------------------------


@transaction.atomic
def delegation_grant(
    *,
    person: User,
    agent: Agent,
    expires_at: datetime,
    tools: list[str] | None = None,
    note: str = "",
) -> Delegation:
    """A person lets an agent act on their behalf until ``expires_at``."""
    if not Agent.objects.for_user(person).filter(pk=agent.pk).exists():
        raise NotPermitted("You can delegate only to agents you can see.")
    if expires_at <= timezone.now():
        raise ApplicationError(
            "The expiry must be in the future.", details={"expires_at": ["Past."]}
        )
    if expires_at > timezone.now() + timedelta(days=366):
        raise ApplicationError("Delegate for at most a year.", details={"expires_at": ["Too far."]})
    granted = set(agent.grants.values_list("tool__slug", flat=True))
    unknown = sorted(set(tools or []) - granted)
    if unknown:
        raise ApplicationError(
            f"{agent.slug} holds no grant of {', '.join(unknown)}.",
            details={"tools": ["Not granted."]},
        )
    delegation = Delegation.objects.create(
        person=person,
        agent=agent,
        tools=sorted(tools or []),
        note=note[:300],
        expires_at=expires_at,
    )
    audit_record(
        actor=Actor.user(person),
        action="runtime.delegation.granted",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        after={"delegation": delegation.pk, "tools": delegation.tools, "expires_at": expires_at},
    )
    return delegation


@transaction.atomic
def delegation_revoke(*, person: User, delegation: Delegation) -> None:
    if delegation.person_id != person.pk:
        raise NotPermitted("Only the person who delegated can revoke it.")
    if delegation.revoked_at is None:
        delegation.revoked_at = timezone.now()
        delegation.save(update_fields=["revoked_at"])
        audit_record(
            actor=Actor.user(person),
            action="runtime.delegation.revoked",
            target_type="agent",
            target_id=delegation.agent_id,
            target_repr=delegation.agent.slug,
            after={"delegation": delegation.pk},
        )


def _standing_delegation(person: User, agent: Agent) -> Delegation | None:
    now = timezone.now()
    return (
        Delegation.objects.filter(person=person, agent=agent, revoked_at__isnull=True)
        .filter(expires_at__gt=now)
        .order_by("-expires_at")
        .first()
    )


# --- runs ------------------------------------------------------------------------------------


def envelope_of(agent: Agent, environment: str) -> dict[str, Any]:
    """What a run may touch: granted tools (in this environment) and bound memory."""
    now = timezone.now()
    tools = {}
    for grant in agent.grants.select_related("tool"):
        if environment in grant.environments and (
            grant.expires_at is None or grant.expires_at > now
        ):
            tools[grant.tool.slug] = {
                "actions": sorted(grant.actions),
                "constraints": grant.constraints,
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
            }
    memory = {b.store.slug: b.access for b in agent.memory_bindings.select_related("store")}
    return {"tools": tools, "memory": memory}


def _narrow(envelope: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """A sub-agent's envelope: no tool, action or memory its parent run did not have."""
    tools = {}
    for slug, entry in envelope["tools"].items():
        parent_entry = parent["tools"].get(slug)
        if parent_entry:
            actions = sorted(set(entry["actions"]) & set(parent_entry["actions"]))
            if actions:
                tools[slug] = {**entry, "actions": actions}
    memory = {}
    for slug, access in envelope["memory"].items():
        parent_access = parent["memory"].get(slug)
        if parent_access:
            memory[slug] = "read" if "read" in (access, parent_access) else access
    return {"tools": tools, "memory": memory}


def _restrict_to_delegation(envelope: dict[str, Any], delegation: Delegation) -> dict[str, Any]:
    if not delegation.tools:
        return envelope
    keep = set(delegation.tools)
    return {**envelope, "tools": {k: v for k, v in envelope["tools"].items() if k in keep}}


@transaction.atomic
def run_start(
    *,
    credential: AgentCredential,
    task: str,
    intent: str = "",
    on_behalf_of: str = "",
    parent_run_id: Any = None,
) -> tuple[Run, str]:
    """Exchange a credential for a run and its short-lived token (returned once)."""
    agent = Agent.objects.select_related("department").get(pk=credential.agent_id)
    environment = credential.environment
    if agent.status != AgentStatus.ACTIVE:
        raise NotPermitted(f"{agent.slug} is {agent.status}; only active agents may run.")
    if environment not in agent.environments:
        raise NotPermitted(f"{agent.slug} may no longer run in {environment}.")
    _refuse_while_killed(agent)
    task = (task or "").strip()
    if not task or len(task) > TASK_MAX:
        raise ApplicationError(
            f"Describe the task (1-{TASK_MAX} characters).", details={"task": ["Required."]}
        )
    version = serving_version(agent, environment)
    if version is None:
        raise ApplicationError(f"{agent.slug} has no version yet.")

    envelope = envelope_of(agent, environment)
    person = None
    delegation = None
    if on_behalf_of:
        person = User.objects.filter(username=on_behalf_of, is_active=True).first()
        delegation = _standing_delegation(person, agent) if person else None
        if delegation is None:
            raise NotPermitted(
                f"{on_behalf_of!r} has no standing delegation to {agent.slug}; they must grant one "
                "before the agent can act on their behalf."
            )
        envelope = _restrict_to_delegation(envelope, delegation)

    parent = None
    if parent_run_id:
        parent = Run.objects.select_related("agent").filter(pk=parent_run_id).first()
        if parent is None or parent.state != RunState.RUNNING:
            raise NotPermitted("The parent run does not exist or is no longer running.")
        if agent.slug not in parent.agent.delegates_to:
            raise NotPermitted(f"{parent.agent.slug} may not start {agent.slug} as a sub-agent.")
        if parent.environment != environment:
            raise NotPermitted("A sub-agent runs in its parent's environment.")
        envelope = _narrow(envelope, parent.envelope)

    issued = issue_token(RUN_TOKEN_KIND)
    now = timezone.now()
    run = Run.objects.create(
        agent=agent,
        version=version,
        credential=credential,
        environment=environment,
        task=task,
        intent=(intent or "")[:300],
        on_behalf_of=person,
        delegation=delegation,
        parent=parent,
        envelope=envelope,
        token_lookup=issued.lookup,
        token_digest=issued.digest,
        token_expires_at=now + timedelta(seconds=agent.run_token_ttl_seconds),
    )
    audit_record(
        actor=_agent_actor(agent),
        action="runtime.run.started",
        target_type="run",
        target_id=str(run.pk),
        target_repr=str(run),
        after={
            "version": version.number,
            "environment": environment,
            "on_behalf_of": on_behalf_of or None,
            "parent": str(parent.pk) if parent else None,
        },
    )
    return run, issued.plaintext


# Runs by token lookup, kept for as long as the policy snapshot they were read under (every
# registry change rebuilds it). What can change under a run without a registry write -- its
# state, its token's expiry, its credential, its agent's status -- is read fresh on every call
# in one indexed query, so ending, expiring or revoking is honoured at once.
_runs: dict[str, Run] = {}
_runs_snapshot: object = None
RUN_CACHE_MAX = 10_000


def run_authenticate(plaintext: str, *, recheck: bool = True) -> Run:
    """The running run this token belongs to; 401 for anything else.

    A token dies with its run: ended, expired, or minted by a since-revoked credential. The
    run's state is read again on every call, unless ``recheck=False``: then the cached run is
    trusted as far as it goes, and the caller must check it where it counts. The decision
    service does, in the very statement that records its answer (``decisions._write``).
    """
    lookup = parse_lookup(plaintext, RUN_TOKEN_KIND)
    run = _cached_run(lookup) if lookup else None
    if run is None or not digest_matches(plaintext, run.token_digest):
        raise Unauthenticated("Invalid run token.")
    if recheck and not run_refresh(run):
        raise Unauthenticated("Invalid run token.")
    if run.credential is None or run.credential.revoked_at is not None:
        raise Unauthenticated("The credential behind this run token was revoked.")
    if run.state == RunState.RUNNING and run.token_expires_at <= timezone.now():
        run_expire(run=run)
    if run.state != RunState.RUNNING:
        _runs.pop(run.token_lookup, None)
        message = f"This run is {run.state}; its token no longer works."
        if run.state == RunState.KILLED:
            raise RunKilledToken(message, run_id=run.pk)
        raise Unauthenticated(message)
    return run


def run_refresh(run: Run) -> bool:
    """Read again what can change under a run without a registry write: its state and token
    expiry, its credential's revocation, its agent's status. False when the run is gone."""
    fresh = _run_freshness(run)
    if fresh is None:
        return False
    run.state, run.token_expires_at, revoked, run.agent.status = fresh
    if run.credential is not None and revoked and run.credential.revoked_at is None:
        run.credential.revoked_at = timezone.now()
    if revoked or run.state != RunState.RUNNING:
        _runs.pop(run.token_lookup, None)  # the next call reads it afresh, and is refused
    return True


def forget_runs() -> None:
    _runs.clear()


def _cached_run(lookup: str) -> Run | None:
    global _runs_snapshot
    snapshot = current_snapshot()
    if snapshot is not _runs_snapshot or len(_runs) >= RUN_CACHE_MAX:
        _runs.clear()
        _runs_snapshot = snapshot
    run = _runs.get(lookup)
    if run is None:
        run = (
            Run.objects.select_related("agent", "agent__department", "credential", "on_behalf_of")
            .filter(token_lookup=lookup)
            .first()
        )
        if run is not None:
            _runs[lookup] = run
    return run


@lru_cache(maxsize=1)
def _freshness_sql() -> str:
    run, credential, agent = Run._meta, AgentCredential._meta, Agent._meta
    return (
        f"SELECT r.state, r.token_expires_at, c.id IS NULL OR c.revoked_at IS NOT NULL, a.status "
        f"FROM {run.db_table} r JOIN {agent.db_table} a ON a.id = r.agent_id "
        f"LEFT JOIN {credential.db_table} c ON c.id = r.credential_id WHERE r.id = %s"
    )


def _run_freshness(run: Run) -> tuple[str, datetime, bool, str] | None:
    """State, token expiry, credential revoked?, agent status: one query, no ORM compile."""
    row = fetch_one(_freshness_sql(), [Run._meta.pk.get_db_prep_value(run.pk, connection)])
    if row is None:
        return None
    expires = Run._meta.get_field("token_expires_at")
    expires_at = expires.to_python(row[1]) if isinstance(row[1], str) else row[1]  # SQLite
    if timezone.is_naive(expires_at):
        expires_at = timezone.make_aware(expires_at, UTC)
    return row[0], expires_at, bool(row[2]), row[3]


def run_heartbeat(*, run: Run) -> Run:
    now = timezone.now()
    updated = Run.objects.filter(pk=run.pk, state=RunState.RUNNING).update(
        last_heartbeat_at=now,
        token_expires_at=now + timedelta(seconds=run.agent.run_token_ttl_seconds),
    )
    run.refresh_from_db()
    if not updated:
        raise Conflict(
            f"This run is {run.state}.", code="run_not_running", details={"state": run.state}
        )
    return run


@transaction.atomic
def run_finish(*, run: Run, state: str, outcome: str = "") -> Run:
    if state not in (RunState.FINISHED, RunState.FAILED):
        raise ApplicationError(
            "A run finishes as 'finished' or 'failed'.", details={"state": ["Invalid."]}
        )
    updated = Run.objects.filter(pk=run.pk, state=RunState.RUNNING).update(
        state=state, outcome=(outcome or "")[:100], ended_at=timezone.now()
    )
    run.refresh_from_db()
    if not updated:
        raise Conflict(
            f"This run is already {run.state}.",
            code="run_not_running",
            details={"state": run.state},
        )
    audit_record(
        actor=_agent_actor(run.agent),
        action="runtime.run.ended",
        target_type="run",
        target_id=str(run.pk),
        target_repr=str(run),
        after={"state": state, "outcome": run.outcome},
    )
    _cancel_approvals(run, f"The run {state} before the request was answered.")
    return run


def _refuse_while_killed(agent: Agent) -> None:
    """No run starts under an engaged kill switch (apps/killswitch)."""
    from apps.killswitch.services import kill_in_force

    kill = kill_in_force(agent)
    if kill is not None:
        raise NotPermitted(
            f"{agent.slug} is stopped by the kill switch ({kill.scope} {kill.target_name}, "
            f"engaged by {kill.engaged_by_name}): {kill.reason}",
            code="killed",
        )


def _cancel_approvals(run: Run, why: str) -> None:
    """A run that ended can use none of its pending approval requests: close them."""
    from apps.approvals.services import approvals_cancel_for_run

    approvals_cancel_for_run(run=run, why=why)


def run_expire(*, run: Run) -> bool:
    """Mark a run whose token lapsed as expired (claimed with a conditional update)."""
    with transaction.atomic():
        claimed = Run.objects.filter(
            pk=run.pk, state=RunState.RUNNING, token_expires_at__lte=timezone.now()
        ).update(state=RunState.EXPIRED, ended_at=timezone.now(), outcome="token expired")
        if claimed:
            audit_record(
                actor=Actor.system("run-expiry"),
                action="runtime.run.expired",
                target_type="run",
                target_id=str(run.pk),
                target_repr=str(run),
            )
            _cancel_approvals(run, "The run's token expired before the request was answered.")
    run.refresh_from_db()
    return bool(claimed)


def runs_expire(*, now: datetime) -> int:
    """Expire every running run whose token lapsed (the beat job)."""
    stale = Run.objects.filter(state=RunState.RUNNING, token_expires_at__lte=now)
    return sum(run_expire(run=run) for run in stale.select_related("agent"))


# --- budgets ---------------------------------------------------------------------------------

BUDGET_UPDATE_FIELDS = ("name", "limit", "edge", "degrade_to_model", "enabled")
# Fixed at creation: the budget's counters hold amounts of its kind, over its scope and owner.
BUDGET_FIXED_FIELDS = ("slug", "kind", "scope", "agent", "department", "team")
_MODEL_NAME_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-"
)


def budget_limit(value: Any) -> Decimal:
    """A limit as a Decimal; ValueError with a message a person can act on otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("Give the limit as a number, e.g. 50000.")
    try:
        limit = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError("Give the limit as a number, e.g. 50000.") from exc
    if not limit.is_finite():
        raise ValueError("The limit must be a finite number.")
    if limit <= 0:
        raise ValueError("The limit must be greater than 0; disable the budget to stop using it.")
    if limit > BUDGET_LIMIT_MAX:
        raise ValueError(f"The limit may be at most {BUDGET_LIMIT_MAX:,}.")
    exponent = limit.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -BUDGET_DECIMAL_PLACES:
        raise ValueError(f"Use at most {BUDGET_DECIMAL_PLACES} decimal places.")
    return limit


def budget_problems(
    *, kind: Any, scope: Any, has_agent: bool, has_department: bool, limit: Any, edge: Any,
    degrade_to_model: Any, has_team: bool = False,
) -> dict[str, list[str]]:  # fmt: skip
    """Every problem with a budget's shape, by field (empty when it is sound).

    Shared by the services and the manifest reader, so a file reports all of them at once.
    """
    problems: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        problems.setdefault(field, []).append(message)

    if kind not in BudgetKind.values:
        add("kind", f"Choose one of {', '.join(BudgetKind.values)}.")
    if scope not in BudgetScope.values:
        add("scope", f"Choose one of {', '.join(BudgetScope.values)}.")
    if edge not in BudgetEdge.values:
        add("edge", f"Choose one of {', '.join(BudgetEdge.values)}.")
    if scope == BudgetScope.DEPARTMENT_MONTH:
        if not has_department:
            add("department", "A department_month budget is over a department: name it.")
        if has_agent:
            add("agent", "A department_month budget is over a whole department, not an agent.")
        if has_team:
            add(
                "team",
                "A department_month budget is over the whole department; for one of its teams "
                "use the team_month scope.",
            )
    elif scope == BudgetScope.TEAM_MONTH:
        if not has_team:
            add("team", "A team_month budget is over a team: name it.")
        if has_agent:
            add("agent", "A team_month budget is over a whole team, not an agent.")
        if has_department:
            add(
                "department",
                "A team_month budget is over a team, whose department is implied: leave the "
                "department out.",
            )
    elif scope in BudgetScope.values:
        if not has_agent:
            add("agent", f"A {scope} budget is over one agent: name it.")
        if has_department:
            add("department", "Only a department_month budget is over a department.")
        if has_team:
            add("team", "Only a team_month budget is over a team.")
    try:
        amount = budget_limit(limit)
    except ValueError as exc:
        add("limit", str(exc))
    else:
        if kind in WHOLE_BUDGET_KINDS and amount != amount.to_integral_value():
            add("limit", f"A {kind} budget counts whole units; use a whole number.")
    if kind == BudgetKind.WALL_TIME:
        if scope in BudgetScope.values and scope != BudgetScope.RUN:
            add("scope", "Wall time is measured per run: use the run scope.")
        if edge in BudgetEdge.values and edge != BudgetEdge.STOP:
            add("edge", "A run over its wall time can only be stopped: use the stop edge.")
    model = degrade_to_model if isinstance(degrade_to_model, str) else None
    if model is None:
        add("degrade_to_model", "Give the model as text.")
    elif edge == BudgetEdge.DEGRADE:
        if kind in BudgetKind.values and kind not in DEGRADABLE_BUDGET_KINDS:
            add(
                "edge",
                "Degrade swaps a model call for a cheaper model, so it applies only to tokens "
                "and spend budgets; use stop, ask or continue.",
            )
        if not model.strip():
            add("degrade_to_model", "Name the cheaper model to use at the edge, e.g. gpt-4.1-mini.")
    elif model.strip():
        add("degrade_to_model", "Only a budget with the degrade edge names a model; clear it.")
    if model and model.strip():
        if len(model) > BUDGET_MODEL_MAX:
            add("degrade_to_model", f"At most {BUDGET_MODEL_MAX} characters.")
        elif not set(model) <= _MODEL_NAME_CHARS:
            add(
                "degrade_to_model",
                "A model name uses letters, digits and . _ : / @ + - only, e.g. gpt-4.1-mini.",
            )
    return problems


def _raise_problems(problems: dict[str, list[str]]) -> None:
    if problems:
        field, messages = next(iter(problems.items()))
        raise ApplicationError(f"{field}: {messages[0]}", details=problems)


def _budget_state(budget: Budget) -> dict[str, Any]:
    return {
        "slug": budget.slug,
        "name": budget.name,
        "kind": budget.kind,
        "scope": budget.scope,
        "agent": budget.agent_slug,
        "department": budget.department_slug,
        "team": budget.team_slug,
        "limit": budget.limit_text,
        "edge": budget.edge,
        "degrade_to_model": budget.degrade_to_model,
        "enabled": budget.enabled,
    }


def _check_budget_name(name: Any) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name or len(name) > BUDGET_NAME_MAX:
        raise ApplicationError(
            f"Name the budget (1-{BUDGET_NAME_MAX} characters), e.g. Tokens per run.",
            details={"name": [f"Required, at most {BUDGET_NAME_MAX} characters."]},
        )
    return name


def _budget_slug(slug: str, *, name: str, owner_slug: str) -> str:
    """The given slug, checked; or one made from the owner and the name, free at this moment."""
    if slug:
        try:
            slug_validator(slug)
        except ValidationError as exc:
            raise ApplicationError(
                f"slug: {exc.messages[0]}", details={"slug": exc.messages}
            ) from exc
        if len(slug) > BUDGET_SLUG_MAX:
            raise ApplicationError(
                f"slug: At most {BUDGET_SLUG_MAX} characters.",
                details={"slug": [f"At most {BUDGET_SLUG_MAX} characters."]},
            )
        return slug
    base = slugify(f"{owner_slug} {name}")[: BUDGET_SLUG_MAX - 4].strip("-") or "budget"
    taken = set(Budget.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def can_change_department_budgets(user: Any, department: Department) -> bool:
    """Admins, and finance over the whole organisation or this department."""
    return scope_of(user).covers(Role.FINANCE, department_id=department.pk, team_id=None)


def can_change_team_budgets(user: Any, team: Team) -> bool:
    """As for its department's budgets: admins, and finance over the whole organisation or the
    team's department (a team's budget caps what the department spends too)."""
    return scope_of(user).covers(Role.FINANCE, department_id=team.department_id, team_id=None)


def _require_budget_owner(
    actor: User, *, agent: Agent | None, department: Department | None, team: Team | None = None
) -> None:
    if agent is not None:
        if not Agent.objects.for_user(actor, CHANGE).filter(pk=agent.pk).exists():
            raise NotPermitted(f"Only {agent.slug}'s owner or an admin can set its budgets.")
        return
    if department is not None and not can_change_department_budgets(actor, department):
        raise NotPermitted(
            f"Only an admin or finance for {department.name} can set department budgets."
        )
    if team is not None and not can_change_team_budgets(actor, team):
        raise NotPermitted(
            f"Only an admin or finance for {team.department.name} can set the budgets of its "
            f"team {team.name}."
        )


@transaction.atomic
def budget_create(
    *,
    actor: User,
    name: str,
    kind: str,
    scope: str,
    limit: Any,
    agent: Agent | None = None,
    department: Department | None = None,
    team: Team | None = None,
    edge: str = BudgetEdge.STOP,
    degrade_to_model: str = "",
    enabled: bool = True,
    slug: str = "",
) -> Budget:
    """Create a budget over one agent (owner or admin), a department or one of its teams (admin
    or finance over the department).

    Every decision of the agent sees it at once (the budget generation is bumped on commit).
    """
    _require_budget_owner(actor, agent=agent, department=department, team=team)
    name = _check_budget_name(name)
    _raise_problems(
        budget_problems(
            kind=kind, scope=scope, has_agent=agent is not None,
            has_department=department is not None, has_team=team is not None, limit=limit,
            edge=edge, degrade_to_model=degrade_to_model,
        )
    )  # fmt: skip
    if not isinstance(enabled, bool):
        raise ApplicationError("enabled: true or false.", details={"enabled": ["true or false."]})
    owner: Agent | Team | Department | None = agent or team or department
    owner_filter: dict[str, Any] = (
        {"agent": agent} if agent is not None
        else {"team": team} if team is not None
        else {"department": department}
    )  # fmt: skip
    if Budget.objects.filter(**owner_filter).count() >= BUDGETS_PER_OWNER_MAX:
        raise ApplicationError(
            f"At most {BUDGETS_PER_OWNER_MAX} budgets over one agent, team or department; every "
            "decision checks each of them. Delete or reuse one.",
            code="too_many_budgets",
        )
    owner_slug = owner.slug if owner is not None else ""
    budget = Budget(
        slug=_budget_slug(slug, name=name, owner_slug=owner_slug),
        name=name,
        kind=kind,
        scope=scope,
        agent=agent,
        department=department if agent is None else None,
        team=team if agent is None else None,
        limit=budget_limit(limit),
        edge=edge,
        degrade_to_model=degrade_to_model.strip() if edge == BudgetEdge.DEGRADE else "",
        enabled=enabled,
    )
    try:
        with transaction.atomic():
            budget.save()
    except IntegrityError as exc:
        raise ApplicationError(
            f"The budget slug {budget.slug!r} is already taken.",
            details={"slug": ["Already taken."]},
            code="conflict",
        ) from exc
    audit_record(
        actor=Actor.user(actor),
        action="runtime.budget.created",
        target_type="budget",
        target_id=budget.pk,
        target_repr=budget.slug,
        after=_budget_state(budget),
    )
    bump_budget_generation()
    return budget


@transaction.atomic
def budget_update(*, actor: User, budget: Budget, data: Mapping[str, Any]) -> Budget:
    """Change a budget's name, limit, edge, degrade model or enabled flag.

    Kind, scope and what it is over are fixed: its counters hold amounts of that kind for that
    owner, so a different budget is a new one. Disabling keeps its ledger and history.
    """
    if not Budget.objects.for_user(actor, CHANGE).filter(pk=budget.pk).exists():
        _require_budget_owner(
            actor, agent=budget.agent, department=budget.department, team=budget.team
        )
        raise NotPermitted("You may not change this budget.")
    fixed = _budget_state(budget)
    for key in BUDGET_FIXED_FIELDS:
        if key in data and data[key] != fixed[key]:
            raise ApplicationError(
                f"A budget's {key} cannot change; create a new budget (and disable this one).",
                details={key: ["Cannot be changed."]},
            )
    unknown = sorted(set(data) - set(BUDGET_UPDATE_FIELDS) - set(BUDGET_FIXED_FIELDS))
    if unknown:
        raise ApplicationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            details={k: ["Unknown field."] for k in unknown},
        )
    budget = (
        Budget.objects.select_for_update(of=("self",))
        .select_related("agent", "department", "team")
        .get(pk=budget.pk)
    )
    before = _budget_state(budget)
    name = _check_budget_name(data["name"]) if "name" in data else budget.name
    limit = data.get("limit", budget.limit)
    edge = data.get("edge", budget.edge)
    model = data.get("degrade_to_model", budget.degrade_to_model)
    if "edge" in data and edge != BudgetEdge.DEGRADE and "degrade_to_model" not in data:
        model = ""  # leaving degrade drops its model
    enabled = data.get("enabled", budget.enabled)
    if not isinstance(enabled, bool):
        raise ApplicationError("enabled: true or false.", details={"enabled": ["true or false."]})
    _raise_problems(
        budget_problems(
            kind=budget.kind, scope=budget.scope, has_agent=budget.agent_id is not None,
            has_department=budget.department_id is not None,
            has_team=budget.team_id is not None, limit=limit, edge=edge, degrade_to_model=model,
        )
    )  # fmt: skip
    budget.name = name
    budget.limit = budget_limit(limit)
    budget.edge = edge
    budget.degrade_to_model = model.strip()
    budget.enabled = enabled
    after = _budget_state(budget)
    if after == before:
        return budget
    budget.save(
        update_fields=["name", "limit", "edge", "degrade_to_model", "enabled", "updated_at"]
    )
    changed = sorted(k for k in after if after[k] != before[k])
    audit_record(
        actor=Actor.user(actor),
        action="runtime.budget.updated",
        target_type="budget",
        target_id=budget.pk,
        target_repr=budget.slug,
        before=before,
        after=after,
        message=f"Changed {', '.join(changed)}",
    )
    bump_budget_generation()
    return budget


def budget_set_enabled(*, actor: User, budget: Budget, enabled: bool) -> Budget:
    """Disable a budget (decisions stop checking it; its ledger stays) or enable it again."""
    return budget_update(actor=actor, budget=budget, data={"enabled": enabled})


@transaction.atomic
def budget_delete(*, actor: User, budget: Budget) -> None:
    """Delete a budget nothing was ever charged to. One with a ledger is disabled instead:
    the ledger is the durable record of what its decisions charged."""
    if not Budget.objects.for_user(actor, CHANGE).filter(pk=budget.pk).exists():
        _require_budget_owner(
            actor, agent=budget.agent, department=budget.department, team=budget.team
        )
        raise NotPermitted("You may not delete this budget.")
    charged = budget.ledger.count()
    if charged:
        raise Conflict(
            f"{budget.name!r} has {charged} charge{'s' if charged != 1 else ''} on its ledger; "
            "disable it instead, so the record of what it charged stays.",
            code="budget_has_ledger",
            details={"ledger_entries": charged},
        )
    before = _budget_state(budget)
    pk = budget.pk
    budget.delete()
    audit_record(
        actor=Actor.user(actor),
        action="runtime.budget.deleted",
        target_type="budget",
        target_id=pk,
        target_repr=before["slug"],
        before=before,
    )
    bump_budget_generation()
