"""Releases' reads: where each version of an agent serves, and its release history."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from django.db.models import Count, Q
from django.http import Http404

from apps.audit.models import AuditEvent
from apps.registry.models import Agent, AgentVersion, Deployment
from apps.registry.selectors import deployed_version, deployments_of

from .models import EvalRun, EvalSuite
from .services import promotion_path, promotion_source

HISTORY_ACTIONS = (
    "releases.version.promoted", "releases.version.rolled_back", "releases.version.evaluated",
)  # fmt: skip


@dataclass
class Stage:
    environment: str
    version: AgentVersion | None
    deployment: Deployment | None
    source: str | None  # where a version must serve before it may come here
    can_roll_back: bool


def release_stages(agent: Agent) -> list[Stage]:
    """The agent's path, dev → staging → canary → prod, with what serves at each stage."""
    deployments = deployments_of(agent)
    first = agent.versions.order_by("number").values_list("number", flat=True).first()
    stages = []
    for environment in promotion_path(agent):
        version = deployed_version(agent, environment, deployments)
        deployment = deployments.get(environment)
        earlier = version is not None and (
            (deployment is not None and deployment.previous_id is not None)
            or (first is not None and first < version.number)
        )
        stages.append(
            Stage(
                environment=environment,
                version=version,
                deployment=deployment,
                source=promotion_source(agent, environment),
                can_roll_back=earlier,
            )
        )
    return stages


def release_history(agent: Agent, limit: int = 30) -> list[tuple[AuditEvent, str]]:
    """Promotions, rollbacks and new versions of the agent, newest first, each in words."""
    events = (
        AuditEvent.objects.filter(target_type="agent", target_id=str(agent.pk))
        .filter(Q(action__in=HISTORY_ACTIONS) | Q(action="registry.agent_version.created"))
        .order_by("-id")[:limit]
    )
    history = []
    for event in events:
        words = event.message or event.action
        if event.action == "registry.agent_version.created":
            number = (event.after or {}).get("number")
            words = f"v{number} created" + (f": {event.message}" if event.message else "")
        history.append((event, words))
    return history


def agent_versions(agent: Agent) -> list[AgentVersion]:
    return list(agent.versions.order_by("-number")[:100])


def serving_where(stages: list[Stage]) -> dict[int, list[str]]:
    """Version number → the environments it serves in."""
    where: dict[int, list[str]] = {}
    for stage in stages:
        if stage.version is not None:
            where.setdefault(stage.version.number, []).append(stage.environment)
    return where


def promote_choices(agent: Agent, stages: list[Stage]) -> list[tuple[str, Any]]:
    """(environment, version) pairs a promotion could take next: each stage's version into
    the stage after it."""
    pairs = []
    for before, after in pairwise(stages):
        if before.version is not None and before.version != after.version:
            pairs.append((after.environment, before.version))
    return pairs


def eval_suites(agent: Agent) -> list[tuple[EvalSuite, EvalRun | None]]:
    """The agent's suites, each with its latest evaluation run."""
    suites = list(
        EvalSuite.objects.filter(agent=agent).annotate(case_count=Count("cases")).order_by("name")
    )
    latest: dict[int, EvalRun] = {}
    for run in (
        EvalRun.objects.filter(suite__agent=agent)
        .select_related("version")
        .order_by("-finished_at")[:500]
    ):
        latest.setdefault(run.suite_id, run)
    return [(suite, latest.get(suite.pk)) for suite in suites]


def eval_suite_get(agent: Agent, slug: str) -> EvalSuite:
    suite = EvalSuite.objects.filter(agent=agent).filter(slug=slug).first()
    if suite is None:
        raise Http404("No such evaluation suite.")
    return suite


def eval_runs(suite: EvalSuite, limit: int = 20) -> list[EvalRun]:
    return list(
        suite.runs.select_related("version", "reference_version").order_by("-finished_at")[:limit]
    )
