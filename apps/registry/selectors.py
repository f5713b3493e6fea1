"""Every registry read, scoped by the permission gate (``for_user``)."""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Count,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.shortcuts import get_object_or_404

from .constants import RISK_ORDER, AgentStatus, Environment, RiskClass
from .models import (
    CHANGE,
    READ,
    Agent,
    AgentVersion,
    DataClass,
    Deployment,
    MemoryBinding,
    MemoryStore,
    Tool,
    ToolGrant,
)

_RISK_RANK = Case(
    *[When(grants__tool__risk_class=risk, then=rank + 1) for rank, risk in enumerate(RISK_ORDER)],
    default=0,
    output_field=IntegerField(),
)


def risk_from_rank(rank: int | None) -> str | None:
    return RISK_ORDER[rank - 1] if rank else None


def agent_list(
    *,
    user: Any,
    q: str = "",
    owner: str = "",
    department: str = "",
    status: str = "",
    risk: str = "",
    environment: str = "",
    action: str = READ,
) -> QuerySet[Agent]:
    """Agents the user may see, filtered; each carries ``max_risk_rank`` and ``grant_count``."""
    agents = Agent.objects.for_user(user, action).select_related(
        "owner", "department", "team__department"
    )
    if q:
        agents = agents.filter(
            Q(name__icontains=q)
            | Q(slug__icontains=q)
            | Q(mission__icontains=q)
            | Q(business_process__icontains=q)
        )
    if owner == "none":
        agents = agents.filter(owner__isnull=True)
    elif owner:
        agents = agents.filter(owner__username=owner)
    if department:
        agents = agents.filter(department__slug=department)
    if status:
        agents = agents.filter(status=status)
    if risk:
        # A subquery, not a join: joining would narrow max_risk_rank to the filtered grants.
        holders = ToolGrant.objects.filter(tool__risk_class=risk).values("agent_id")
        agents = agents.filter(pk__in=holders)
    if environment:
        # JSON containment is not portable to SQLite, so match the quoted name in the list.
        agents = agents.filter(environments__icontains=f'"{environment}"')
    return agents.annotate(
        max_risk_rank=Max(_RISK_RANK), grant_count=Count("grants", distinct=True)
    ).order_by("name")


def can_change_agent(user: Any, agent: Agent) -> bool:
    """Whether ``user`` may change ``agent`` (its owner, or an admin): one permission gate for
    the pages and services that act on an agent."""
    return Agent.objects.for_user(user, CHANGE).filter(pk=agent.pk).exists()


def agent_get(*, user: Any, slug: str, action: str = READ) -> Agent:
    """The agent, or 404 when it does not exist *or* the user may not see it."""
    return get_object_or_404(
        Agent.objects.for_user(user, action).select_related(
            "owner", "department", "team__department"
        ),
        slug=slug,
    )


def agent_grants(agent: Agent) -> QuerySet[Any]:
    return agent.grants.select_related("tool").order_by("tool__name")


def agent_memory(agent: Agent) -> QuerySet[Any]:
    return agent.memory_bindings.select_related("store").order_by("store__name")


def agent_versions(agent: Agent) -> QuerySet[AgentVersion]:
    return agent.versions.order_by("-number")


def version_get(*, agent: Agent, number: int) -> AgentVersion:
    return get_object_or_404(AgentVersion, agent=agent, number=number)


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class VersionDiff:
    older: AgentVersion
    newer: AgentVersion
    changes: list[FieldChange]
    instructions_diff: list[str]

    @property
    def is_empty(self) -> bool:
        return not self.changes and not self.instructions_diff


def _keyed(entries: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {entry[key]: entry for entry in entries}


def version_diff(*, older: AgentVersion, newer: AgentVersion) -> VersionDiff:
    """What changed between two versions, field by field; grants and memory per entry;
    instructions as a unified diff."""
    a, b = older.snapshot, newer.snapshot
    changes: list[FieldChange] = []
    skip = {"instructions", "instructions_sha256", "tools", "memory"}
    for field in sorted((set(a) | set(b)) - skip):
        if a.get(field) != b.get(field):
            changes.append(FieldChange(field, a.get(field), b.get(field)))
    for field, key in (("tools", "tool"), ("memory", "store")):
        old, new = _keyed(a.get(field, []), key), _keyed(b.get(field, []), key)
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                changes.append(FieldChange(f"{field}: {name}", old.get(name), new.get(name)))
    instructions_diff = list(
        difflib.unified_diff(
            a.get("instructions", "").splitlines(),
            b.get("instructions", "").splitlines(),
            fromfile=f"v{older.number}",
            tofile=f"v{newer.number}",
            lineterm="",
        )
    )
    return VersionDiff(older, newer, changes, instructions_diff)


def tool_list(*, user: Any, q: str = "", risk: str = "", action: str = READ) -> QuerySet[Tool]:
    tools = (
        Tool.objects.for_user(user, action).select_related("owner").prefetch_related("data_classes")
    )
    if q:
        tools = tools.filter(
            Q(name__icontains=q) | Q(slug__icontains=q) | Q(description__icontains=q)
        )
    if risk:
        tools = tools.filter(risk_class=risk)
    return tools.annotate(agent_count=Count("grants", distinct=True)).order_by("name")


def tool_get(*, user: Any, slug: str, action: str = READ) -> Tool:
    return get_object_or_404(Tool.objects.for_user(user, action).select_related("owner"), slug=slug)


def tool_grants_visible(*, user: Any, tool: Tool) -> QuerySet[Any]:
    """Grants of this tool to agents the user may see."""
    return tool.grants.filter(agent__in=Agent.objects.for_user(user)).select_related("agent")


def tool_downstream(*, user: Any, tool: Tool) -> list[tuple[str, Tool | None]]:
    """The tools this one sets off, in its order, each with the tool when the user may see it
    (None: not in the catalogue, so shown as its slug alone)."""
    found = {t.slug: t for t in Tool.objects.for_user(user).filter(slug__in=tool.downstream_tools)}
    return [(slug, found.get(slug)) for slug in tool.downstream_tools]


def memory_store_list(*, user: Any, q: str = "", store_class: str = "") -> QuerySet[MemoryStore]:
    stores = (
        MemoryStore.objects.for_user(user).select_related("owner").prefetch_related("data_classes")
    )
    if q:
        stores = stores.filter(Q(name__icontains=q) | Q(slug__icontains=q))
    if store_class:
        stores = stores.filter(store_class=store_class)
    return stores.annotate(agent_count=Count("bindings", distinct=True)).order_by("name")


def memory_store_get(*, user: Any, slug: str, action: str = READ) -> MemoryStore:
    return get_object_or_404(
        MemoryStore.objects.for_user(user, action).select_related("owner"), slug=slug
    )


def memory_store_bindings_visible(*, user: Any, store: MemoryStore) -> QuerySet[Any]:
    return store.bindings.filter(agent__in=Agent.objects.for_user(user)).select_related("agent")


@dataclass(frozen=True)
class HomeSummary:
    agent_counts: dict[str, int]
    active_agents: list[Agent]
    unowned_agents: list[Agent]
    ungated_critical_grants: list[Any]
    tool_count: int
    critical_tool_count: int


def home_summary(*, user: Any) -> HomeSummary:
    """The at-a-glance answers: what runs, who owns it, what it can touch, what is unsafe."""
    agents = Agent.objects.for_user(user)
    counts = {s: 0 for s in AgentStatus.values}
    for row in agents.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    active = list(agent_list(user=user, status=AgentStatus.ACTIVE)[:50])
    unowned = list(
        agents.filter(owner__isnull=True)
        .exclude(status=AgentStatus.RETIRED)
        .select_related("department", "team__department")[:50]
    )
    from .models import ToolGrant

    ungated = list(
        ToolGrant.objects.filter(
            agent__in=agents, tool__risk_class=RiskClass.CRITICAL, tool__approval_required=False
        )
        .exclude(agent__status=AgentStatus.RETIRED)
        .select_related("agent", "tool")
        .order_by("agent__name", "tool__name")[:50]
    )
    tools = Tool.objects.for_user(user)
    return HomeSummary(
        agent_counts=counts,
        active_agents=active,
        unowned_agents=unowned,
        ungated_critical_grants=ungated,
        tool_count=tools.count(),
        critical_tool_count=tools.filter(risk_class=RiskClass.CRITICAL).count(),
    )


# --- the API's full representations ----------------------------------------------------------


def with_agent_details(agents: QuerySet[Agent]) -> QuerySet[Agent]:
    """Agents ready to show in full (the API): grants and memory bindings prefetched, and
    ``current_version`` (the latest version number, or None) annotated."""
    latest = AgentVersion.objects.filter(agent=OuterRef("pk")).order_by("-number").values("number")
    return agents.prefetch_related(
        Prefetch(
            "grants", queryset=ToolGrant.objects.select_related("tool").order_by("tool__slug")
        ),
        Prefetch(
            "memory_bindings",
            queryset=MemoryBinding.objects.select_related("store").order_by("store__slug"),
        ),
    ).annotate(current_version=Subquery(latest[:1]))


def agent_get_detailed(*, user: Any, slug: str) -> Agent:
    """The agent with its details (404 when out of scope)."""
    agents = Agent.objects.for_user(user).select_related("owner", "department", "team__department")
    return get_object_or_404(with_agent_details(agents), slug=slug)


def agent_grant_get(*, agent: Agent, tool_slug: str) -> ToolGrant:
    """The agent's grant of this tool, or 404 (the agent came from a scoped selector)."""
    return get_object_or_404(agent.grants.select_related("agent", "tool"), tool__slug=tool_slug)


def agent_binding_get(*, agent: Agent, store_slug: str) -> MemoryBinding:
    return get_object_or_404(
        agent.memory_bindings.select_related("agent", "store"), store__slug=store_slug
    )


def data_class_list(*, user: Any) -> QuerySet[DataClass]:
    """The configured data classes; anyone holding a role reads them, outsiders see none."""
    from apps.accounts.permissions import scope_of

    if not scope_of(user).has_any_role:
        return DataClass.objects.none()
    return DataClass.objects.order_by("sensitivity", "name")


def data_class_get(*, user: Any, slug: str) -> DataClass:
    return get_object_or_404(data_class_list(user=user), slug=slug)


def agent_owner_choices(*, user: Any) -> list[tuple[str, str]]:
    """(username, display name) of the people owning agents the user may see: the owner filter."""
    rows = (
        Agent.objects.for_user(user)
        .filter(owner__isnull=False)
        .values_list("owner__username", "owner__first_name", "owner__last_name")
        .distinct()
        .order_by("owner__username")
    )
    return [(u, f"{first} {last}".strip() or u) for u, first, last in rows]


def deployments_of(agent: Agent) -> dict[str, Deployment]:
    """The agent's deployments by environment, with their versions (one query)."""
    return {d.environment: d for d in agent.deployments.select_related("version")}


def deployed_version(
    agent: Agent, environment: str, deployments: dict[str, Deployment] | None = None
) -> AgentVersion | None:
    """The version deployed in ``environment``: its deployment's, else the latest.
    ``deployments``: :func:`deployments_of`, when the caller has read them already."""
    if deployments is None:
        deployments = deployments_of(agent)
    deployment = deployments.get(environment)
    if deployment is not None:
        return deployment.version
    return agent.versions.order_by("-number").first()


def serving_version(
    agent: Agent, environment: str, *, draw: float | None = None
) -> AgentVersion | None:
    """The version a new run of ``agent`` in ``environment`` uses (docs/releases.md): the
    deployed one, except that a run started in prod goes to the canary's version for the
    canary's share of traffic (``draw`` in [0, 1): the uniform draw, given by tests)."""
    deployments = deployments_of(agent)
    canary = deployments.get(Environment.CANARY)
    if environment == Environment.PROD and canary is not None and canary.traffic_percent > 0:
        chance = random.random() if draw is None else draw  # a traffic split, not a secret
        if chance * 100 < canary.traffic_percent:
            return canary.version
    return deployed_version(agent, environment, deployments)
