"""Every registry write. Each checks the actor, validates, writes, versions and audits in one
transaction; forms, the API, manifests and the admin all come through here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common import generation
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.common.tokens import token_digest

from .constants import AgentStatus, MemoryAccess, MemoryClass
from .models import (
    CHANGE,
    Agent,
    AgentVersion,
    DataClass,
    MemoryBinding,
    MemoryStore,
    Tool,
    ToolGrant,
    can_create_agent,
    can_create_catalog_entry,
)
from .snapshots import (
    agent_spec,
    behaviour_snapshot,
    canonical_json,
    memory_store_spec,
    sha256_text,
    tool_spec,
)
from .validators import validate_webhook_secret, validate_webhook_url

# The compiled Cedar set (apps/policy) is derived from the registry; it rebuilds on this bump.
POLICY_GENERATION = "policy"

AGENT_FIELDS = (
    "name",
    "slug",
    "mission",
    "owner",
    "department",
    "team",
    "business_process",
    "model_family",
    "default_model",
    "providers",
    "autonomy_level",
    "environments",
    "status",
    "failure_posture",
    "shutdown_action",
    "shutdown_webhook",
    "shutdown_webhook_secret",
    "shutdown_contact",
    "shutdown_notes",
    "rollback_action",
    "rollback_contact",
    "rollback_notes",
    "tags",
    "instructions",
    "knowledge_base_version",
    "run_token_ttl_seconds",
    "delegates_to",
    "parameters",
)
TOOL_FIELDS = (
    "name",
    "slug",
    "description",
    "owner",
    "risk_class",
    "actions",
    "capabilities",
    "prohibitions",
    "input_schema",
    "output_schema",
    "rate_limit_per_minute",
    "cost_per_call_usd",
    "approval_required",
    "reversible",
    "rollback_hint",
    "preview_format",
    "blast_radius",
    "systems",
    "downstream_tools",
    "audit_event",
)
MEMORY_STORE_FIELDS = ("name", "slug", "description", "store_class", "retention_days", "owner")

# A tool's cost per call, in US dollars: kept to the micro-dollar (the column's six places), and
# no more than this, which no single call of a real tool comes near (a typo guard, not a price).
COST_PER_CALL_MAX = Decimal(999_999)
COST_PER_CALL_PLACES = Decimal("0.000001")


# --- helpers ---------------------------------------------------------------------------------


def _record_change(**event: Any) -> None:
    """Audit a registry change and tell every process's compiled policy set to follow it."""
    audit_record(**event)
    generation.bump_on_commit(POLICY_GENERATION)


def _agent_state(agent: Agent) -> dict[str, Any]:
    """What the audit trail records of an agent: its manifest spec plus its display name, and
    of its safe-state webhook secret a keyed fingerprint only, so replacing it is audited."""
    state = {"name": agent.name, **agent_spec(agent)}
    if agent.shutdown_webhook_secret:
        state["shutdown_webhook_secret"] = token_digest(agent.shutdown_webhook_secret)[:12]
    return state


def _assign(instance: Model, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed - {"data_classes"})
    if unknown:
        raise ApplicationError(
            f"Unknown field(s): {', '.join(unknown)}.",
            details={k: ["Unknown field."] for k in unknown},
        )
    for key, value in data.items():
        if key in allowed:
            setattr(instance, key, value)


def _full_clean(instance: Model, *, exclude: list[str] | None = None) -> None:
    """Run the model's field validators and map them to one ApplicationError."""
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        details = exc.message_dict
        field, messages = next(iter(details.items()))
        label = "" if field == "__all__" else f"{field}: "
        raise ApplicationError(f"{label}{messages[0]}", details=details) from exc
    except RecursionError as exc:
        # Django's JSONField check serialises the value first; absurd nesting must be a 400.
        raise ApplicationError("A JSON value is nested too deeply to store.") from exc


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise NotPermitted(message)


def _check_owner_choice(actor: User, owner: User | None) -> None:
    """Only admins name someone else as owner, or no owner at all; everyone else owns what they
    register (an owner who gave their agent away could no longer change it back)."""
    if scope_of(actor).is_admin or (owner is not None and owner.pk == actor.pk):
        return
    raise ApplicationError(
        "Only an admin can make someone else the owner, or leave it without one.",
        details={"owner": ["Leave yourself as owner, or ask an admin to transfer it."]},
    )


def _save_or_conflict(instance: Model, message: str) -> None:
    """Save; a unique constraint lost to a concurrent writer is a 409, not a 500."""
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise Conflict(message) from exc


def _save_new(instance: Model) -> None:
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise ApplicationError(
            "That slug is already taken.", details={"slug": ["That slug is already taken."]}
        ) from exc


# --- agents ----------------------------------------------------------------------------------


def _check_team(agent: Agent) -> None:
    if agent.team is not None and agent.team.department_id != agent.department_id:
        raise ApplicationError(
            f"Team {agent.team.name!r} is not in department {agent.department.name!r}.",
            details={"team": ["Pick a team of the agent's department."]},
        )


def _check_shutdown_webhook(agent: Agent) -> None:
    """A safe-state webhook is an http(s) URL, and always signed: the receiver must be able to
    tell that the kill switch really called it."""
    errors: dict[str, list[str]] = {}
    for name, validate in (
        ("shutdown_webhook", validate_webhook_url),
        ("shutdown_webhook_secret", validate_webhook_secret),
    ):
        value = getattr(agent, name)
        try:
            if value:
                validate(value)
        except ValidationError as exc:
            errors[name] = list(exc.messages)
    if agent.shutdown_webhook and not agent.shutdown_webhook_secret and not errors:
        errors["shutdown_webhook_secret"] = [
            "Set a signing secret for the safe-state webhook: its receiver checks each call "
            "with it."
        ]
    if errors:
        field, messages = next(iter(errors.items()))
        raise ApplicationError(f"{field}: {messages[0]}", details=errors)


def _check_agent_rules(agent: Agent) -> None:
    _check_team(agent)
    _check_shutdown_webhook(agent)
    if agent.pk:
        stranded = [
            f"{g.tool.slug} ({env})"
            for g in agent.grants.select_related("tool")
            for env in g.environments
            if env not in agent.environments
        ]
        if stranded:
            raise ApplicationError(
                "Tool grants still use environments the agent would no longer run in: "
                + ", ".join(stranded)
                + ". Narrow those grants first.",
                details={"environments": ["Still used by grants: " + ", ".join(stranded)]},
            )


def record_version(*, agent: Agent, actor: Actor, summary: str = "") -> AgentVersion | None:
    """Write a new AgentVersion if what drives behaviour changed since the last one."""
    snapshot = behaviour_snapshot(agent)
    digest = sha256_text(canonical_json(snapshot))
    latest = agent.versions.order_by("-number").first()
    if latest is not None and latest.snapshot_hash == digest:
        return None
    version = AgentVersion.objects.create(
        agent=agent,
        number=(latest.number + 1) if latest else 1,
        snapshot=snapshot,
        snapshot_hash=digest,
        instructions_hash=snapshot["instructions_sha256"],
        change_summary=summary[:300],
        created_by_name=actor.name,
    )
    _record_change(
        actor=actor,
        action="registry.agent_version.created",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        after={"number": version.number},
        message=summary,
    )
    return version


@transaction.atomic
def agent_create(*, actor: User, data: Mapping[str, Any]) -> Agent:
    agent = Agent()
    _assign(agent, data, AGENT_FIELDS)
    if "owner" not in data:
        agent.owner = actor
    _require(
        can_create_agent(actor, department_id=agent.department_id, team_id=agent.team_id),
        "You can register agents only where you hold the owner role.",
    )
    _check_owner_choice(actor, agent.owner)
    _full_clean(agent)
    _check_agent_rules(agent)
    _save_new(agent)
    audit = Actor.user(actor)
    _record_change(
        actor=audit,
        action="registry.agent.created",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        after=_agent_state(agent),
    )
    record_version(agent=agent, actor=audit, summary="Registered")
    return agent


def _check_can_change_agent(actor: User, agent: Agent) -> None:
    _require(
        Agent.objects.for_user(actor, CHANGE).filter(pk=agent.pk).exists(),
        "Only the agent's owner or an admin can change it.",
    )


@transaction.atomic
def agent_update(*, actor: User, agent: Agent, data: Mapping[str, Any], summary: str = "") -> Agent:
    _check_can_change_agent(actor, agent)
    before = _agent_state(agent)
    if "owner" in data and data["owner"] != agent.owner:
        _check_owner_choice(actor, data["owner"])
    _assign(agent, data, AGENT_FIELDS)
    _full_clean(agent, exclude=["slug"] if "slug" not in data else None)
    _check_agent_rules(agent)
    try:
        with transaction.atomic():
            agent.save()
    except IntegrityError as exc:
        raise ApplicationError("That slug is already taken.", details={"slug": ["Taken."]}) from exc
    after = _agent_state(agent)
    if after != before:
        audit = Actor.user(actor)
        _record_change(
            actor=audit,
            action="registry.agent.updated",
            target_type="agent",
            target_id=agent.pk,
            target_repr=agent.slug,
            before=before,
            after=after,
        )
        record_version(agent=agent, actor=audit, summary=summary or "Edited")
    return agent


@transaction.atomic
def agent_suspend(*, actor: Actor, agent: Agent, reason: str) -> bool:
    """Suspend an active agent on Tether's own authority (an automatic kill trigger), audited
    like an edit: every next step of its runs is refused until a person makes it active again.
    False, and nothing written, when it was not active (already suspended, say)."""
    before = _agent_state(agent)
    # Conditional: two triggers firing at once suspend it once.
    if not Agent.objects.filter(pk=agent.pk, status=AgentStatus.ACTIVE).update(
        status=AgentStatus.SUSPENDED, updated_at=timezone.now()
    ):
        return False
    agent.refresh_from_db()
    _record_change(
        actor=actor,
        action="registry.agent.updated",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        before={**before, "status": AgentStatus.ACTIVE},
        after=_agent_state(agent),
        message=reason,
    )
    record_version(agent=agent, actor=actor, summary="Suspended automatically")
    return True


def _validate_grant(agent: Agent, grant: ToolGrant) -> None:
    _full_clean(grant, exclude=["agent", "tool"])
    extra_actions = [a for a in grant.actions if a not in grant.tool.actions]
    if extra_actions:
        raise ApplicationError(
            f"Tool {grant.tool.slug!r} has no action(s) {', '.join(extra_actions)}; "
            f"it offers {', '.join(grant.tool.actions)}.",
            details={"actions": [f"Choose from {', '.join(grant.tool.actions)}."]},
        )
    if not grant.environments:
        raise ApplicationError(
            "Grant the tool in at least one environment.",
            details={"environments": ["Choose at least one environment."]},
        )
    outside = [e for e in grant.environments if e not in agent.environments]
    if outside:
        raise ApplicationError(
            f"Agent {agent.slug!r} may not run in {', '.join(outside)}; it runs in "
            f"{', '.join(agent.environments) or 'no environment yet'}. Add the environment to "
            "the agent first.",
            details={"environments": [f"The agent may not run in {', '.join(outside)}."]},
        )


def _set_grant(
    agent: Agent,
    tool: Tool,
    *,
    actions: list[str],
    environments: list[str],
    constraints: dict[str, Any] | None,
    expires_at: datetime | None,
) -> ToolGrant:
    grant = ToolGrant.objects.filter(agent=agent, tool=tool).first() or ToolGrant(
        agent=agent, tool=tool
    )
    grant.actions = actions
    grant.environments = environments
    grant.constraints = constraints or {}
    grant.expires_at = expires_at
    _validate_grant(agent, grant)
    _save_or_conflict(grant, "This grant was changed at the same moment; reload and try again.")
    return grant


@transaction.atomic
def grant_set(
    *,
    actor: User,
    agent: Agent,
    tool: Tool,
    actions: list[str],
    environments: list[str],
    constraints: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> ToolGrant:
    """Grant a tool to an agent, or change an existing grant."""
    _check_can_change_agent(actor, agent)
    before = _agent_state(agent)
    grant = _set_grant(
        agent,
        tool,
        actions=actions,
        environments=environments,
        constraints=constraints,
        expires_at=expires_at,
    )
    _audit_agent_change(actor, agent, before, f"Granted {tool.slug}: {', '.join(actions)}")
    return grant


@transaction.atomic
def grant_remove(*, actor: User, grant: ToolGrant) -> None:
    agent = grant.agent
    _check_can_change_agent(actor, agent)
    before = _agent_state(agent)
    slug = grant.tool.slug
    grant.delete()
    _audit_agent_change(actor, agent, before, f"Revoked {slug}")


def _set_binding(agent: Agent, store: MemoryStore, access: str) -> MemoryBinding:
    if access not in MemoryAccess.values:
        raise ApplicationError(
            f"Access must be one of {', '.join(MemoryAccess.values)}.",
            details={"access": ["Invalid."]},
        )
    if store.store_class == MemoryClass.FORBIDDEN and access != MemoryAccess.READ:
        raise ApplicationError(
            f"{store.name!r} is a forbidden store: agents may never write to it.",
            details={"access": ["A forbidden store can only be bound read-only."]},
        )
    binding = MemoryBinding.objects.filter(agent=agent, store=store).first() or MemoryBinding(
        agent=agent, store=store
    )
    binding.access = access
    _save_or_conflict(binding, "This binding was changed at the same moment; reload and try again.")
    return binding


@transaction.atomic
def memory_binding_set(
    *, actor: User, agent: Agent, store: MemoryStore, access: str
) -> MemoryBinding:
    _check_can_change_agent(actor, agent)
    before = _agent_state(agent)
    binding = _set_binding(agent, store, access)
    _audit_agent_change(actor, agent, before, f"Memory {store.slug}: {access}")
    return binding


@transaction.atomic
def memory_binding_remove(*, actor: User, binding: MemoryBinding) -> None:
    agent = binding.agent
    _check_can_change_agent(actor, agent)
    before = _agent_state(agent)
    slug = binding.store.slug
    binding.delete()
    _audit_agent_change(actor, agent, before, f"Unbound memory {slug}")


def _audit_agent_change(actor: User, agent: Agent, before: dict[str, Any], summary: str) -> None:
    after = _agent_state(agent)
    if after == before:
        return
    audit = Actor.user(actor)
    _record_change(
        actor=audit,
        action="registry.agent.updated",
        target_type="agent",
        target_id=agent.pk,
        target_repr=agent.slug,
        before=before,
        after=after,
        message=summary,
    )
    record_version(agent=agent, actor=audit, summary=summary)


@transaction.atomic
def agent_apply(
    *,
    actor: User,
    agent: Agent | None,
    data: Mapping[str, Any],
    grants: list[dict[str, Any]],
    memory: list[dict[str, Any]],
) -> Agent:
    """Make an agent exactly as declared (a manifest): fields, the full set of grants and of
    memory bindings, then one version for the whole change."""
    if agent is None:
        agent = Agent()
        _assign(agent, data, AGENT_FIELDS)
        _require(
            can_create_agent(actor, department_id=agent.department_id, team_id=agent.team_id),
            f"{agent.slug}: you can register agents only where you hold the owner role.",
        )
        _check_owner_choice(actor, agent.owner)
        before: dict[str, Any] | None = None
    else:
        _check_can_change_agent(actor, agent)
        before = _agent_state(agent)
        if data.get("owner") != agent.owner:
            _check_owner_choice(actor, data.get("owner"))
        _assign(agent, data, AGENT_FIELDS)
    _full_clean(agent, exclude=["slug"] if before is not None else None)
    _check_team(agent)  # grants are replaced below, so only the team needs checking here
    _check_shutdown_webhook(agent)
    _save_new(agent) if before is None else agent.save()

    wanted_tools = {g["tool"].pk for g in grants}
    agent.grants.exclude(tool_id__in=wanted_tools).delete()
    for g in grants:
        _set_grant(
            agent,
            g["tool"],
            actions=g["actions"],
            environments=g["environments"],
            constraints=g.get("constraints"),
            expires_at=g.get("expires_at"),
        )
    wanted_stores = {m["store"].pk for m in memory}
    agent.memory_bindings.exclude(store_id__in=wanted_stores).delete()
    for m in memory:
        _set_binding(agent, m["store"], m["access"])

    after = _agent_state(agent)
    if after != before:
        audit = Actor.user(actor)
        _record_change(
            actor=audit,
            action="registry.agent.created" if before is None else "registry.agent.updated",
            target_type="agent",
            target_id=agent.pk,
            target_repr=agent.slug,
            before=before,
            after=after,
            message="Applied from a manifest",
        )
        record_version(agent=agent, actor=audit, summary="Applied from a manifest")
    return agent


# --- tools and memory stores -----------------------------------------------------------------


def cost_per_call(value: Any) -> Decimal:
    """A tool's cost per call as it is stored: a finite number of US dollars from 0 to
    ``COST_PER_CALL_MAX``, rounded to six places. Anything else is an ApplicationError naming
    the field, so the console, the API and a manifest all answer it with a 4xx, never a 500."""

    def refuse(message: str) -> ApplicationError:
        return ApplicationError(
            f"cost_per_call_usd: {message}", details={"cost_per_call_usd": [message]}
        )

    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise refuse("Give the cost per call as a number of US dollars, e.g. 0.002.")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:  # ValueError: an int too long to print
        raise refuse("Give the cost per call as a number of US dollars, e.g. 0.002.") from exc
    if not amount.is_finite():
        raise refuse("The cost per call must be a finite number of US dollars.")
    if amount < 0:
        raise refuse("The cost per call cannot be negative; use 0 for a tool that costs nothing.")
    if amount > COST_PER_CALL_MAX:
        raise refuse(f"The cost per call may be at most {COST_PER_CALL_MAX:,} US dollars.")
    # copy_abs: "-0" is no cost, not a negative one.
    return amount.quantize(COST_PER_CALL_PLACES, rounding=ROUND_HALF_UP).copy_abs()


def _tool_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The tool fields with the cost per call parsed (see :func:`cost_per_call`)."""
    if "cost_per_call_usd" not in data:
        return data
    return {**data, "cost_per_call_usd": cost_per_call(data["cost_per_call_usd"])}


def _catalog_write(
    *,
    actor: User,
    instance: Tool | MemoryStore,
    data: Mapping[str, Any],
    fields: tuple[str, ...],
    kind: str,
    spec: Any,
    rules: Callable[[User, Any], None] | None = None,
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> Any:
    """Create or update a tool or memory store (they share their permission and audit rules).

    ``prepare(data)`` parses values the model field would take less kindly, once the actor may
    write; ``rules(actor, instance)`` checks what the field validators cannot (other rows), once
    the fields are valid."""
    creating = instance.pk is None
    model = type(instance)
    if creating:
        _require(can_create_catalog_entry(actor), f"Only owners and admins can register a {kind}.")
        before = None
    else:
        _require(
            model.objects.for_user(actor, CHANGE).filter(pk=instance.pk).exists(),
            f"Only the {kind}'s owner or an admin can change it.",
        )
        before = {"name": instance.name, **spec(instance)}
    if prepare is not None:
        data = prepare(data)
    if creating and "owner" not in data:
        instance.owner = actor
    if "owner" in data and data["owner"] != instance.owner:
        _check_owner_choice(actor, data["owner"])
    _assign(instance, data, fields)
    _full_clean(instance, exclude=["slug"] if not creating and "slug" not in data else None)
    if rules is not None:
        rules(actor, instance)
    _save_new(instance) if creating else instance.save()
    if "data_classes" in data:
        instance.data_classes.set(_data_classes(data["data_classes"]))
    after = {"name": instance.name, **spec(instance)}
    if after != before:
        _record_change(
            actor=Actor.user(actor),
            action=f"registry.{kind.replace(' ', '_')}.{'created' if creating else 'updated'}",
            target_type=kind.replace(" ", "_"),
            target_id=instance.pk,
            target_repr=instance.slug,
            before=before,
            after=after,
        )
    return instance


def _data_classes(values: Iterable[Any]) -> list[DataClass]:
    values = list(values)
    if all(isinstance(v, DataClass) for v in values):
        return values
    known = {dc.slug: dc for dc in DataClass.objects.all()}
    unknown = [str(v) for v in values if v not in known]
    if unknown:
        raise ApplicationError(
            f"Unknown data class(es): {', '.join(unknown)}. Known: {', '.join(known)}.",
            details={"data_classes": ["Unknown: " + ", ".join(unknown)]},
        )
    return [known[v] for v in values]


def _check_downstream_tools(actor: User, tool: Tool) -> None:
    """The tools a tool sets off are registered tools, each listed once and never the tool
    itself: an approver is shown each one, and whether the agent holds it."""
    wanted = list(tool.downstream_tools)
    problem = ""
    if tool.slug in wanted:
        problem = f"{tool.slug!r} cannot set itself off; list the other tools a call starts."
    elif repeated := sorted({slug for slug in wanted if wanted.count(slug) > 1}):
        problem = f"List each tool once: {', '.join(repeated)} appears more than once."
    else:
        known = set(
            Tool.objects.for_user(actor).filter(slug__in=wanted).values_list("slug", flat=True)
        )
        if unknown := [slug for slug in wanted if slug not in known]:
            problem = (
                f"No tool {', '.join(repr(s) for s in unknown)}: list the slugs of registered "
                "tools (register a tool before naming it here)."
            )
    if problem:
        raise ApplicationError(
            f"downstream_tools: {problem}", details={"downstream_tools": [problem]}
        )


@transaction.atomic
def tool_create(*, actor: User, data: Mapping[str, Any]) -> Tool:
    return _catalog_write(
        actor=actor, instance=Tool(), data=data, fields=TOOL_FIELDS, kind="tool", spec=tool_spec,
        rules=_check_downstream_tools, prepare=_tool_data,
    )  # fmt: skip


@transaction.atomic
def tool_update(*, actor: User, tool: Tool, data: Mapping[str, Any]) -> Tool:
    return _catalog_write(
        actor=actor, instance=tool, data=data, fields=TOOL_FIELDS, kind="tool", spec=tool_spec,
        rules=_check_downstream_tools, prepare=_tool_data,
    )  # fmt: skip


@transaction.atomic
def memory_store_create(*, actor: User, data: Mapping[str, Any]) -> MemoryStore:
    return _catalog_write(
        actor=actor,
        instance=MemoryStore(),
        data=data,
        fields=MEMORY_STORE_FIELDS,
        kind="memory store",
        spec=memory_store_spec,
    )


@transaction.atomic
def memory_store_update(*, actor: User, store: MemoryStore, data: Mapping[str, Any]) -> MemoryStore:
    if (
        data.get("store_class") == MemoryClass.FORBIDDEN
        and store.bindings.filter(access=MemoryAccess.READ_WRITE).exists()
    ):
        raise ApplicationError(
            "Agents still write to this store; make their bindings read-only before forbidding it.",
            details={"store_class": ["Writers are still bound."]},
        )
    return _catalog_write(
        actor=actor,
        instance=store,
        data=data,
        fields=MEMORY_STORE_FIELDS,
        kind="memory store",
        spec=memory_store_spec,
    )


# --- housekeeping ----------------------------------------------------------------------------


def grants_expire(*, now: datetime) -> int:
    """Remove grants whose expiry has passed, each in its own transaction, audited as Tether.

    Safe to run twice at once: a grant another worker already removed is skipped.
    """
    expired = ToolGrant.objects.filter(expires_at__lte=now).values_list("pk", flat=True)
    removed = 0
    actor = Actor.system("grant-expiry")
    for grant_id in list(expired):
        with transaction.atomic():
            locked = ToolGrant.objects.select_for_update().select_related("agent", "tool")
            grant = locked.filter(pk=grant_id).first()
            if grant is None:
                continue
            agent = grant.agent
            before = _agent_state(agent)
            grant.delete()
            _record_change(
                actor=actor,
                action="registry.agent.updated",
                target_type="agent",
                target_id=agent.pk,
                target_repr=agent.slug,
                before=before,
                after=_agent_state(agent),
                message=f"Grant of {grant.tool.slug} expired",
            )
            record_version(agent=agent, actor=actor, summary=f"Grant of {grant.tool.slug} expired")
            removed += 1
    return removed
