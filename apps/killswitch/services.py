"""Engaging and releasing the kill switch.

Engaging it, in one transaction: the switch's row; every run running in its scope, and every
run those runs started (sub-agents, at any depth), set to ``killed`` — which every web process
honours on the agent's very next step, because the decision service records an answer only
for a run that is still running, checked in the statement that writes it
(``runtime.decisions._write``), so no cache can let a killed run through; the run tokens of
those runs are refused from then on; their pending approval requests are cancelled; their
spans are put under a legal hold, so retention never deletes the evidence; and one audit
event says who pressed it, why, and what it stopped. After the commit the decision trail is
sealed into the audit chain at once. While the switch is engaged no run may start in its scope.

Releasing it lets new runs start again; the runs it killed stay killed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.models import Department, Team, User
from apps.accounts.permissions import scope_of
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, Conflict, NotPermitted
from apps.registry.models import CHANGE, Agent
from apps.runtime.constants import RunState
from apps.runtime.models import Run

from .constants import KILL_TARGET, KILLED_OUTCOME, REASON_MAX, KillScope, MemoryReads
from .freeze import bump_freeze, forget_freeze
from .models import KillSwitch, KillTrigger

logger = logging.getLogger(__name__)


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > REASON_MAX:
        raise ApplicationError(
            f"Say why (1-{REASON_MAX} characters): it is recorded with the kill and shown to "
            "the owners.",
            details={"reason": ["Required."]},
        )
    return reason


def may_press(user: User, kill: KillSwitch) -> bool:
    """Whether ``user`` may release ``kill`` (the same people who may engage it)."""
    try:
        _may_press(user, kill.scope, _agent_of(kill))
    except NotPermitted:
        return False
    return True


def _agent_of(kill: KillSwitch) -> Agent | None:
    return kill.agent if kill.scope == KillScope.AGENT else (kill.run.agent if kill.run else None)


def _may_press(actor: User | None, scope: str, agent: Agent | None) -> None:
    """Admins may stop anything; an agent's owner may stop the agent and its runs."""
    if actor is None:
        return  # an automatic trigger, engaged by Tether itself
    if scope_of(actor).is_admin:
        return
    owned = Agent.objects.for_user(actor, CHANGE)
    if (
        scope in (KillScope.RUN, KillScope.AGENT)
        and agent is not None
        and owned.filter(pk=agent.pk).exists()
    ):
        return
    raise NotPermitted("Only an admin, or the agent's owner for its own agent, may stop this.")


def runs_in_scope(kill: KillSwitch) -> QuerySet[Run]:
    """The runs running in the switch's scope now (without their sub-agents' runs)."""
    running = Run.objects.filter(state=RunState.RUNNING)
    lookups: dict[str, dict[str, Any]] = {
        KillScope.RUN: {"pk": kill.run_id},
        KillScope.AGENT: {"agent_id": kill.agent_id},
        KillScope.TEAM: {"agent__team_id": kill.team_id},
        KillScope.DEPARTMENT: {"agent__department_id": kill.department_id},
    }
    return running.filter(**lookups[kill.scope]) if kill.scope in lookups else running


def blast_radius(
    *,
    scope: str,
    run: Run | None = None,
    agent: Agent | None = None,
    team: Team | None = None,
    department: Department | None = None,
) -> dict[str, Any]:
    """What engaging the switch would stop now: running runs (with their sub-agents' runs),
    the distinct agents behind them and the memory stores it would freeze — for the
    confirmation a person reads before pressing."""
    probe = KillSwitch(scope=scope, run=run, agent=agent, team=team, department=department)
    ids = _with_descendants(set(runs_in_scope(probe).values_list("pk", flat=True)))
    agents = Run.objects.filter(pk__in=ids).values("agent_id").distinct().count()
    return {"runs": len(ids), "agents": agents, "stores": stores_to_freeze(probe)}


def _with_descendants(run_ids: set[Any]) -> set[Any]:
    """The runs and every running run they started, at any depth: no sub-agent outlives it."""
    found, frontier = set(run_ids), set(run_ids)
    while frontier:
        children = set(
            Run.objects.filter(parent_id__in=frontier, state=RunState.RUNNING).values_list(
                "pk", flat=True
            )
        )
        frontier = children - found
        found |= frontier
    return found


def kill_engage(
    *,
    actor: User | None,
    scope: str,
    reason: str,
    run: Run | None = None,
    agent: Agent | None = None,
    team: Team | None = None,
    department: Department | None = None,
    trigger: str = "",
    memory_reads: str = MemoryReads.ALLOW,
    trigger_rule: KillTrigger | None = None,
) -> KillSwitch:
    """Stop everything in the scope now and keep it stopped until released. ``actor`` None is
    an automatic engagement (``trigger`` says what tripped it, ``trigger_rule`` the admin's rule
    that engaged it, if one did). ``memory_reads`` says whether
    the memory stores it freezes may still be read."""
    reason = _clean_reason(reason)
    if memory_reads not in MemoryReads.values:
        raise ApplicationError(
            f"Unknown memory reads setting {memory_reads!r}.",
            details={"memory_reads": ["Invalid."]},
        )
    targets: dict[str, Any] = {
        KillScope.RUN: run,
        KillScope.AGENT: agent,
        KillScope.TEAM: team,
        KillScope.DEPARTMENT: department,
    }
    if scope not in KillScope.values:
        raise ApplicationError(f"Unknown scope {scope!r}.", details={"scope": ["Invalid."]})
    if scope != KillScope.GLOBAL and targets[scope] is None:
        raise ApplicationError(f"Name the {scope} to stop.", details={scope: ["Required."]})
    if scope == KillScope.RUN:
        assert run is not None
        agent = run.agent
    _may_press(actor, scope, agent)
    now = timezone.now()
    actor_name = actor.get_username() if actor is not None else f"tether ({trigger or 'automatic'})"
    with transaction.atomic():
        kill = KillSwitch.objects.create(
            scope=scope,
            run=run if scope == KillScope.RUN else None,
            agent=agent if scope == KillScope.AGENT else None,
            team=team if scope == KillScope.TEAM else None,
            department=department if scope == KillScope.DEPARTMENT else None,
            reason=reason,
            automatic=actor is None,
            trigger=trigger[:100],
            trigger_rule=trigger_rule,
            engaged_by=actor,
            engaged_by_name=actor_name,
            engaged_at=now,
            memory_reads=memory_reads,
        )
        kill.frozen_stores = stores_to_freeze(kill)
        killed = _kill_runs(kill, now)
        kill.runs_killed = len(killed)
        kill.runs.set(killed)
        kill.approvals_cancelled = _cancel_approvals(kill, killed, actor_name)
        kill.save(update_fields=["runs_killed", "approvals_cancelled", "frozen_stores"])
        bump_freeze()
        _hold_traces(kill, killed, actor, actor_name)
        actor_of = Actor.user(actor) if actor is not None else Actor.system(actor_name)
        for run_id in sorted(killed, key=str):  # each run's timeline shows its own end
            audit_record(
                actor=actor_of,
                action="runtime.run.killed",
                target_type="run",
                target_id=str(run_id),
                target_repr=f"run {str(run_id)[:8]}",
                after={"state": RunState.KILLED, "kill_switch": kill.pk, "scope": scope},
                message=f"Kill switch ({kill.scope} {kill.target_name}): {reason}",
            )
        audit_record(
            actor=actor_of,
            action="killswitch.engaged",
            target_type=KILL_TARGET,
            target_id=kill.pk,
            target_repr=str(kill),
            after={
                "scope": scope,
                "target": kill.target_name,
                "automatic": kill.automatic,
                "trigger": kill.trigger,
                "trigger_rule": trigger_rule.pk if trigger_rule is not None else None,
                "runs_killed": sorted(str(pk) for pk in killed),
                "approvals_cancelled": kill.approvals_cancelled,
                "frozen_stores": kill.frozen_stores,
                "memory_reads": kill.memory_reads,
            },
            message=reason,
        )
        kill_id = kill.pk

        def after_engaged() -> None:
            _after_engaged(kill_id)

        transaction.on_commit(after_engaged, robust=True)
    from apps.runtime import services as runtime

    runtime.forget_runs()  # this process reads its runs afresh; the others are stopped at write
    forget_freeze()  # and its frozen stores; the others within FREEZE_REFRESH_SECONDS
    return kill


def stores_to_freeze(kill: KillSwitch) -> list[str]:
    """The memory stores the switch's agents may write: no one writes them while it holds."""
    from apps.registry.constants import MemoryAccess
    from apps.registry.models import MemoryBinding, MemoryStore

    if kill.scope == KillScope.GLOBAL:
        return sorted(MemoryStore.objects.values_list("slug", flat=True))
    agent_of: dict[str, dict[str, Any]] = {
        KillScope.RUN: {"agent_id": kill.run.agent_id if kill.run else None},
        KillScope.AGENT: {"agent_id": kill.agent_id},
        KillScope.TEAM: {"agent__team_id": kill.team_id},
        KillScope.DEPARTMENT: {"agent__department_id": kill.department_id},
    }
    bindings = MemoryBinding.objects.filter(access=MemoryAccess.READ_WRITE, **agent_of[kill.scope])
    return sorted(set(bindings.values_list("store__slug", flat=True)))


def _kill_runs(kill: KillSwitch, now: Any) -> set[Any]:
    ids = _with_descendants(set(runs_in_scope(kill).values_list("pk", flat=True)))
    if ids:
        Run.objects.filter(pk__in=ids, state=RunState.RUNNING).update(
            state=RunState.KILLED, ended_at=now, outcome=KILLED_OUTCOME
        )
    return ids


def _cancel_approvals(kill: KillSwitch, killed: set[Any], actor_name: str) -> int:
    from apps.approvals.models import ApprovalRequest
    from apps.approvals.services import approval_cancel

    pending = (
        ApprovalRequest.objects.pending().filter(run_id__in=killed).select_related("tool", "agent")
    )
    why = f"Stopped by the kill switch ({actor_name}): {kill.reason}"
    return sum(
        approval_cancel(approval=a, actor=Actor.system("kill-switch"), why=why) for a in pending
    )


def _hold_traces(kill: KillSwitch, killed: set[Any], actor: User | None, actor_name: str) -> None:
    """Every killed run's spans under a legal hold: the evidence outlives retention."""
    from apps.traces.services import legal_hold_create

    for run in Run.objects.filter(pk__in=killed):
        legal_hold_create(
            run=run,
            reason=f"Kill switch #{kill.pk}: {kill.reason}"[:REASON_MAX],
            placed_by=actor,
            placed_by_name=actor_name,
        )


def _after_engaged(kill_id: int) -> None:
    """Once the kill is committed: push it to the killed runs' connected SDKs, seal the
    decision trail into the audit chain now rather than at the beat's next tick (up to its
    usual lag: a decision still being written must not be skipped by a block; the beat seals
    the last seconds within 15 s; the kill's own audit event is chained already), then queue
    the owners' notices and the agents' safe-state actions. Each step is on its own: one
    failing never keeps the others from running."""
    from apps.runtime.sealing import decisions_seal

    from . import control, tasks

    steps = (
        ("pushing the kill to the SDKs", lambda: control.push_killed(kill_id)),
        ("sealing the decision trail", decisions_seal),
        ("queueing notices and safe-state actions", lambda: tasks.queue_after_kill(kill_id)),
    )
    for what, step in steps:
        try:
            step()
        except Exception:
            logger.warning("kill switch %s: %s failed", kill_id, what, exc_info=True)


def kill_release(*, actor: User, kill: KillSwitch, reason: str) -> KillSwitch:
    """End an engaged switch: runs may start in its scope again; killed runs stay killed."""
    reason = _clean_reason(reason)
    _may_press(actor, kill.scope, _agent_of(kill))
    with transaction.atomic():
        released = KillSwitch.objects.filter(pk=kill.pk, released_at__isnull=True).update(
            released_at=timezone.now(), released_by_name=actor.get_username(),
            release_reason=reason,
        )  # fmt: skip
        if not released:
            raise Conflict("This kill switch was released already.")
        bump_freeze()
        kill.refresh_from_db()
        audit_record(
            actor=Actor.user(actor),
            action="killswitch.released",
            target_type=KILL_TARGET,
            target_id=kill.pk,
            target_repr=str(kill),
            after={"scope": kill.scope, "target": kill.target_name},
            message=reason,
        )
    forget_freeze()
    return kill


def kill_in_force(agent: Agent) -> KillSwitch | None:
    """The engaged switch that keeps ``agent`` from starting runs, if any."""
    return (
        KillSwitch.objects.filter(released_at__isnull=True)
        .filter(
            Q(scope=KillScope.GLOBAL)
            | Q(scope=KillScope.AGENT, agent_id=agent.pk)
            | Q(scope=KillScope.DEPARTMENT, department_id=agent.department_id)
            | (Q(scope=KillScope.TEAM, team_id=agent.team_id) if agent.team_id else Q(pk__in=[]))
        )
        .order_by("engaged_at")
        .first()
    )
