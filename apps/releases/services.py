"""Version lifecycle (docs/releases.md): promotion along dev → staging → canary → prod, and the
one-click rollback. Both write the environment's :class:`~apps.registry.models.Deployment`,
which the runtime reads at every run start, so either is in force for the next run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry.constants import ENVIRONMENT_ORDER, Environment
from apps.registry.models import Agent, AgentVersion, Deployment
from apps.registry.selectors import can_change_agent, deployed_version, deployments_of

if TYPE_CHECKING:
    from .gate import Verdict

CANARY_DEFAULT_PERCENT = 10


def promotion_path(agent: Agent) -> list[str]:
    """The agent's environments in promotion order."""
    return [env for env in ENVIRONMENT_ORDER if env in agent.environments]


def promotion_source(agent: Agent, environment: str) -> str | None:
    """The environment a version must serve in before it may go to ``environment`` (none for
    the first on the agent's path)."""
    path = promotion_path(agent)
    at = path.index(environment)
    return path[at - 1] if at > 0 else None


def promoted_to(agent: Agent, environment: str, version: AgentVersion) -> bool:
    """Whether ``version`` serves in ``environment`` by a promotion. Only the first stage of
    the path counts when it merely follows the latest version: a later stage that was never
    promoted to holds nothing yet, so nothing skips it."""
    deployments = deployments_of(agent)
    deployment = deployments.get(environment)
    if deployment is not None:
        return deployment.version_id == version.pk
    first = promotion_path(agent)[0]
    return environment == first and deployed_version(agent, environment, deployments) == version


def _check_can_release(actor: User, agent: Agent) -> None:
    if not can_change_agent(actor, agent):
        raise NotPermitted("Only the agent's owner or an admin can promote or roll back it.")


def _deploy(
    *, agent: Agent, environment: str, version: AgentVersion, previous: AgentVersion | None,
    actor: Actor, traffic_percent: int, note: str,
) -> Deployment:  # fmt: skip
    deployment, _ = Deployment.objects.update_or_create(
        agent=agent,
        environment=environment,
        defaults={
            "version": version, "previous": previous, "traffic_percent": traffic_percent,
            "deployed_by_name": actor.name, "deployed_at": timezone.now(), "note": note[:300],
        },
    )  # fmt: skip
    return deployment


def version_promote(
    *,
    actor: User,
    agent: Agent,
    version: AgentVersion,
    environment: str,
    traffic_percent: int | None = None,
    note: str = "",
) -> Deployment:
    """Serve ``version`` in ``environment``: only a version that serves in the environment
    before it on the agent's path (dev → staging → canary → prod) may go there, and only when
    its evaluation suites pass without regression (apps/releases/gate.py).

    The suites are evaluated between two passes of the release's checks, outside its
    transaction: they may call the agent's eval hooks (seconds, with the agent's row locked
    otherwise), and the evaluation runs they record must be kept when they block, which the
    rollback of an ApplicationError would undo. The first pass refuses a promotion that cannot
    happen before any hook is called; the second, under the lock, deploys."""
    _promote(
        actor=actor, agent=agent, version=version, environment=environment,
        traffic_percent=traffic_percent, note=note, verdict=None,
    )  # fmt: skip
    from .gate import promotion_gate  # the gate reads runs: imported when promoting

    verdict = promotion_gate(agent=agent, version=version, environment=environment, actor=actor)
    if not verdict.passed:
        raise ApplicationError(verdict.message, details={"evaluation": verdict.details})
    deployment = _promote(
        actor=actor, agent=agent, version=version, environment=environment,
        traffic_percent=traffic_percent, note=note, verdict=verdict,
    )  # fmt: skip
    assert deployment is not None  # given a verdict, _promote deploys or raises
    return deployment


@transaction.atomic
def _promote(
    *,
    actor: User,
    agent: Agent,
    version: AgentVersion,
    environment: str,
    traffic_percent: int | None,
    note: str,
    verdict: Verdict | None,
) -> Deployment | None:
    """The release's checks, then, given the gate's passing ``verdict``, the deployment."""
    _check_can_release(actor, agent)
    Agent.objects.select_for_update().filter(pk=agent.pk).first()  # one release at a time
    if version.agent_id != agent.pk:
        raise ApplicationError("That version belongs to another agent.")
    if environment not in agent.environments:
        raise ApplicationError(
            f"{agent.slug} does not run in {environment}.",
            details={"environment": ["Not one of the agent's environments."]},
        )
    source = promotion_source(agent, environment)
    if source is not None and not promoted_to(agent, source, version):
        raise ApplicationError(
            f"v{version.number} does not serve in {source}: promote it there first "
            f"({' → '.join(promotion_path(agent))}).",
            details={"environment": [f"Promote to {source} first."]},
        )
    current = deployed_version(agent, environment)
    percent = 100
    if environment == Environment.CANARY:
        percent = CANARY_DEFAULT_PERCENT if traffic_percent is None else traffic_percent
        if not 1 <= percent <= 100:
            raise ApplicationError(
                "A canary takes 1-100 % of prod's runs.",
                details={"traffic_percent": ["Between 1 and 100."]},
            )
    if verdict is None:
        return None
    who = Actor.user(actor)
    deployment = _deploy(
        agent=agent, environment=environment, version=version,
        previous=current if current != version else None, actor=who,
        traffic_percent=percent, note=note,
    )  # fmt: skip
    share = f" for {percent}% of prod's runs" if environment == Environment.CANARY else ""
    audit_record(
        actor=who, action="releases.version.promoted", target_type="agent", target_id=agent.pk,
        target_repr=agent.slug,
        before={"version": current.number if current else None},
        after={"version": version.number, "environment": environment, "from": source,
               "traffic_percent": percent, "evaluation": verdict.summary},
        message=f"v{version.number} promoted to {environment}{share}"
        + (f" (was v{current.number})" if current and current != version else ""),
    )  # fmt: skip
    return deployment


@transaction.atomic
def version_rollback(*, actor: User, agent: Agent, environment: str, note: str = "") -> Deployment:
    """Serve the previous version in ``environment`` again, for every run started from now:
    the one the last promotion replaced, else the highest version below the one serving."""
    _check_can_release(actor, agent)
    Agent.objects.select_for_update().filter(pk=agent.pk).first()
    if environment not in agent.environments:
        raise ApplicationError(f"{agent.slug} does not run in {environment}.")
    deployment = agent.deployments.filter(environment=environment).first()
    current = deployed_version(agent, environment)
    if current is None:
        raise ApplicationError(f"{agent.slug} has no version yet.")
    target = deployment.previous if deployment is not None else None
    if target is None or target == current:
        target = agent.versions.filter(number__lt=current.number).order_by("-number").first()
    if target is None:
        raise ApplicationError(
            f"v{current.number} is {agent.slug}'s first version: nothing to roll back to."
        )
    who = Actor.user(actor)
    percent = deployment.traffic_percent if deployment is not None else 100
    result = _deploy(
        agent=agent, environment=environment, version=target, previous=None, actor=who,
        traffic_percent=percent, note=note,
    )  # fmt: skip
    audit_record(
        actor=who, action="releases.version.rolled_back", target_type="agent",
        target_id=agent.pk, target_repr=agent.slug,
        before={"version": current.number}, after={"version": target.number, "environment": environment},
        message=f"{environment} rolled back from v{current.number} to v{target.number}"
        + (f": {note.strip()}" if note.strip() else ""),
    )  # fmt: skip
    return result
