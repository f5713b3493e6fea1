"""Identity and runs: agent credentials, delegations, run start, heartbeat and finish."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.common.tokens import IssuedToken, digest_matches, issue_token, parse_lookup
from apps.registry.constants import AgentStatus
from apps.registry.models import CHANGE, Agent, AgentVersion

from .constants import CREDENTIAL_KIND, RUN_TOKEN_KIND, TASK_MAX, RunState
from .models import AgentCredential, Delegation, Run

LAST_USED_RESOLUTION = timedelta(seconds=60)


class Unauthenticated(ApplicationError):
    code = "not_authenticated"
    http_status = 401


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
    task = (task or "").strip()
    if not task or len(task) > TASK_MAX:
        raise ApplicationError(
            f"Describe the task (1-{TASK_MAX} characters).", details={"task": ["Required."]}
        )
    version = AgentVersion.objects.filter(agent=agent).order_by("-number").first()
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


def run_authenticate(plaintext: str) -> Run:
    """The running run this token belongs to; 401 for anything else.

    A token dies with its run: ended, expired, or minted by a since-revoked credential.
    """
    lookup = parse_lookup(plaintext, RUN_TOKEN_KIND)
    run = (
        Run.objects.select_related("agent", "agent__department", "credential", "on_behalf_of")
        .filter(token_lookup=lookup)
        .first()
        if lookup
        else None
    )
    if run is None or not digest_matches(plaintext, run.token_digest):
        raise Unauthenticated("Invalid run token.")
    if run.credential is None or run.credential.revoked_at is not None:
        raise Unauthenticated("The credential behind this run token was revoked.")
    if run.state == RunState.RUNNING and run.token_expires_at <= timezone.now():
        run_expire(run=run)
    if run.state != RunState.RUNNING:
        raise Unauthenticated(f"This run is {run.state}; its token no longer works.")
    return run


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
    return run


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
    run.refresh_from_db()
    return bool(claimed)


def runs_expire(*, now: datetime) -> int:
    """Expire every running run whose token lapsed (the beat job)."""
    stale = Run.objects.filter(state=RunState.RUNNING, token_expires_at__lte=now)
    return sum(run_expire(run=run) for run in stale.select_related("agent"))
