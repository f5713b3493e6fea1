from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.accounts.constants import Role
from apps.accounts.models import Department, Team, slug_validator
from apps.accounts.permissions import scope_of
from apps.registry.constants import Environment
from apps.registry.models import CHANGE, READ, Agent, AgentVersion

from .constants import (
    BUDGET_SLUG_MAX,
    OUTCOME_MAX,
    TASK_MAX,
    Action,
    BudgetEdge,
    BudgetKind,
    BudgetScope,
    Disposition,
    RunState,
)


class AgentCredential(models.Model):
    """A long-lived secret an agent exchanges for run tokens; one environment each."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="credentials")
    environment = models.CharField(max_length=16, choices=Environment.choices)
    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_by_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.agent.slug} · {self.environment} · {self.name}"


class Delegation(models.Model):
    """A person's standing permission for an agent to act on their behalf."""

    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="delegations"
    )
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="delegations")
    tools = models.JSONField(
        default=list, blank=True, help_text="Tool slugs it covers; empty means all the agent's."
    )
    note = models.CharField(max_length=300, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.person} → {self.agent.slug}"


class Run(models.Model):
    """One execution of an agent, from token exchange to its end, tied to the version in force."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="runs")
    credential = models.ForeignKey(
        AgentCredential, null=True, on_delete=models.SET_NULL, related_name="runs"
    )
    environment = models.CharField(max_length=16, choices=Environment.choices)
    task = models.TextField(max_length=TASK_MAX)
    intent = models.CharField(max_length=300, blank=True)
    on_behalf_of = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    delegation = models.ForeignKey(
        Delegation, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.RUNNING)
    outcome = models.CharField(max_length=OUTCOME_MAX, blank=True)
    envelope = models.JSONField(
        default=dict, help_text="What this run may touch: tools with actions, memory with access."
    )
    token_lookup = models.CharField(max_length=16, unique=True)
    token_digest = models.CharField(max_length=64)
    token_expires_at = models.DateTimeField()
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["agent", "-started_at"]),
            models.Index(fields=["state", "token_expires_at"]),
            # The runs list (newest first, a page at a time) and the live fleet's "ended in the
            # last minutes" (apps/traces/selectors.py).
            models.Index(fields=["-started_at", "-id"], name="run_started"),
            models.Index(
                fields=["-ended_at"], name="run_ended", condition=Q(ended_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} run {str(self.id)[:8]}"


class Decision(models.Model):
    """One answer of the decision service, written before the answer leaves.

    This table is the decision audit trail: rows are only inserted, the serial id orders them,
    and the hash chain (a later migration) covers them like the audit log.
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    # Written before every answer: PostgreSQL does not check these keys (each check would lock
    # the run's and the agent's row for every decision); nothing deletes a run or an agent that
    # has decisions (PROTECT). The composite indexes below cover lookups by run and by agent.
    run = models.ForeignKey(
        Run,
        null=True,
        on_delete=models.PROTECT,
        related_name="decisions",
        db_constraint=False,
        db_index=False,
    )
    agent = models.ForeignKey(
        Agent,
        on_delete=models.PROTECT,
        related_name="decisions",
        db_constraint=False,
        db_index=False,
    )
    environment = models.CharField(max_length=16)
    action = models.CharField(max_length=16, choices=Action.choices)
    target = models.CharField(max_length=200, help_text="Tool, model, memory store or agent.")
    tool_action = models.CharField(max_length=40, blank=True)
    disposition = models.CharField(max_length=8, choices=Disposition.choices)
    reasons = models.JSONField(default=list)
    reasoning = models.TextField()
    policies = models.JSONField(default=list)
    budgets = models.JSONField(default=dict)
    arguments_sha256 = models.CharField(max_length=64, blank=True)
    modified = models.JSONField(null=True, blank=True)
    on_behalf_of_name = models.CharField(max_length=200, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(
        max_length=64, blank=True, help_text="The agent's key for this request; a retry reuses it."
    )
    retry_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="For defer: when to ask again."
    )
    duration_us = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["agent", "-id"]),
            models.Index(fields=["disposition", "-id"]),
            models.Index(fields=["run", "id"]),
        ]

    def __str__(self) -> str:
        return f"#{self.id} {self.disposition} {self.action} {self.target}"

    @property
    def modified_arguments(self) -> dict | None:
        return (self.modified or {}).get("arguments")

    @property
    def modified_model(self) -> str | None:
        return (self.modified or {}).get("model")


class DecisionSeal(models.Model):
    """One sealed block of the decision trail (apps/runtime/sealing.py).

    ``digest`` chains the canonical JSON of decisions ``first_decision_id``..``last_decision_id``
    (in id order) onto ``prev_digest``, the block before's digest. Each seal is also written as
    an audit event, so the audit log's hash chain vouches for the seals themselves.
    """

    sealed_at = models.DateTimeField(auto_now_add=True)
    first_decision_id = models.BigIntegerField()
    last_decision_id = models.BigIntegerField(unique=True)
    count = models.PositiveIntegerField()
    prev_digest = models.CharField(max_length=64)
    digest = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"seal {self.pk}: decisions {self.first_decision_id}-{self.last_decision_id}"


def new_budget_slug() -> str:
    """A free slug for a budget created without one (the ORM, the admin, fixtures)."""
    return f"budget-{uuid.uuid4().hex[:12]}"


class BudgetQuerySet(models.QuerySet["Budget"]):
    def for_user(self, user: Any, action: str = READ) -> BudgetQuerySet:
        """The permission gate for budgets.

        Read: an agent budget with its agent (the registry's gate); a department budget, and
        a team budget of that department, by anyone who reads an agent in that department or
        holds a role there or in one of its teams. Change: an agent budget by whoever may
        change the agent (its owner, an admin); a department or team budget by an admin or
        finance over that department (or the whole organisation).
        """
        scope = scope_of(user)
        if scope.is_admin:
            return self.all()
        if not scope.has_any_role:
            return self.none()
        if action == CHANGE:
            agents = Agent.objects.for_user(user, CHANGE).values("pk")
            if Role.FINANCE in scope.org_wide_roles:
                return self.filter(
                    Q(agent__in=agents) | Q(department__isnull=False) | Q(team__isnull=False)
                )
            finance_departments = [
                pk for pk, roles in scope.department_roles.items() if Role.FINANCE in roles
            ]
            return self.filter(
                Q(agent__in=agents)
                | Q(department_id__in=finance_departments)
                | Q(team__department_id__in=finance_departments)
            )
        if scope.reads_everything:
            return self.all()
        visible = Agent.objects.for_user(user)
        departments = set(scope.department_roles) | set(
            Team.objects.filter(pk__in=list(scope.team_roles)).values_list(
                "department_id", flat=True
            )
        )
        return self.filter(
            Q(agent__in=visible.values("pk"))
            | Q(department_id__in=visible.values("department_id"))
            | Q(department_id__in=list(departments))
            | Q(team__department_id__in=visible.values("department_id"))
            | Q(team__department_id__in=list(departments))
        )


class Budget(models.Model):
    """An autonomy budget: a limit of one kind, over a scope and period, with an edge.

    Over one agent (scopes run, agent_day, agent_month), a department (department_month: every
    agent of it) or a team (team_month: every agent of the team; the department is the team's,
    so ``department`` stays empty). ``slug`` names it in the API, the console and manifests;
    kind, scope and what it is over never change (its counters are kept under its id, in the
    units of its kind).
    """

    name = models.CharField(max_length=100)
    slug = models.SlugField(
        max_length=BUDGET_SLUG_MAX,
        unique=True,
        default=new_budget_slug,
        validators=[slug_validator],
    )
    kind = models.CharField(max_length=16, choices=BudgetKind.choices)
    scope = models.CharField(max_length=20, choices=BudgetScope.choices)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    limit = models.DecimalField(max_digits=14, decimal_places=4)
    edge = models.CharField(max_length=10, choices=BudgetEdge.choices, default=BudgetEdge.STOP)
    degrade_to_model = models.CharField(max_length=100, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = BudgetQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(
                        scope="department_month",
                        department__isnull=False,
                        agent__isnull=True,
                        team__isnull=True,
                    )
                    | models.Q(
                        scope="team_month",
                        team__isnull=False,
                        agent__isnull=True,
                        department__isnull=True,
                    )
                    | (
                        ~models.Q(scope__in=["department_month", "team_month"])
                        & models.Q(agent__isnull=False, department__isnull=True, team__isnull=True)
                    )
                ),
                name="budget_scope_matches_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} ≤ {self.limit_text}, {self.scope})"

    @property
    def agent_slug(self) -> str | None:
        return self.agent.slug if self.agent is not None else None

    @property
    def department_slug(self) -> str | None:
        return self.department.slug if self.department is not None else None

    @property
    def team_slug(self) -> str | None:
        return self.team.slug if self.team is not None else None

    @property
    def over_name(self) -> str:
        """What it is over: the agent's, the team's or the department's name."""
        if self.agent is not None:
            return self.agent.name
        if self.team is not None:
            return self.team.name
        return self.department.name if self.department is not None else ""

    @property
    def holds_to_recorded_spend(self) -> bool:
        """A monthly spend budget over a department or a team: held to what the cost rollups
        record was spent (the number finance sees), not to reservations (docs/costs.md)."""
        return self.kind == BudgetKind.SPEND and self.scope in (
            BudgetScope.DEPARTMENT_MONTH,
            BudgetScope.TEAM_MONTH,
        )

    @property
    def limit_text(self) -> str:
        """The limit without trailing zeros: ``50000``, ``12.5``."""
        return format(self.limit.normalize(), "f")


class BudgetLedgerEntry(models.Model):
    """The durable record of every amount charged to a budget (Redis holds the hot counters)."""

    # Written with every charging decision, in the same statement: as for Decision, the keys
    # are not checked by PostgreSQL (the budget check would lock the budget's row each time).
    budget = models.ForeignKey(
        Budget, on_delete=models.CASCADE, related_name="ledger", db_constraint=False, db_index=False
    )
    period_key = models.CharField(max_length=64)
    decision = models.ForeignKey(
        Decision, on_delete=models.PROTECT, related_name="ledger", db_constraint=False
    )
    amount = models.DecimalField(max_digits=14, decimal_places=4)
    reconciliation = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["budget", "period_key"])]

    def __str__(self) -> str:
        return f"{self.budget_id}:{self.period_key} {self.amount}"
