from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.accounts.constants import Role
from apps.accounts.models import Department, Team, slug_validator
from apps.accounts.permissions import scope_of

from .constants import (
    INSTRUCTIONS_MAX,
    NAME_MAX,
    RUN_TOKEN_TTL_DEFAULT,
    RUN_TOKEN_TTL_MAX,
    RUN_TOKEN_TTL_MIN,
    SLUG_MAX,
    AgentStatus,
    AutonomyLevel,
    Environment,
    FailurePosture,
    MemoryAccess,
    MemoryClass,
    PreviewFormat,
    RiskClass,
)
from .validators import (
    validate_actions,
    validate_blast_radius,
    validate_environments,
    validate_json_object,
    validate_json_schema,
    validate_slug_list,
    validate_string_list,
    validate_tags,
    validate_unreserved_slug,
)

READ = "view"
CHANGE = "change"


class DataClass(models.Model):
    """A class of data (public … regulated); configurable by admins, ordered by sensitivity."""

    slug = models.SlugField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=60, unique=True)
    description = models.CharField(max_length=300, blank=True)
    sensitivity = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sensitivity", "name"]
        verbose_name_plural = "data classes"

    def __str__(self) -> str:
        return self.name


class AgentQuerySet(models.QuerySet["Agent"]):
    def for_user(self, user: Any, action: str = READ) -> AgentQuerySet:
        """The permission gate for agents. ``change``: admins, or the agent's owner."""
        scope = scope_of(user)
        if scope.is_admin:
            return self.all()
        if action == CHANGE:
            return self.filter(owner_id=scope.user_id) if scope.has_any_role else self.none()
        if scope.reads_everything:
            return self.all()
        if not scope.has_any_role:
            return self.none()
        return self.filter(
            Q(owner_id=scope.user_id)
            | Q(department_id__in=list(scope.department_roles))
            | Q(team_id__in=list(scope.team_roles))
        )


_M = TypeVar("_M", bound=models.Model)


class CatalogQuerySet(models.QuerySet[_M]):
    """Tools and memory stores are an organisation-wide catalogue: every role reads it, so an
    owner can grant a tool another department runs; only its owner or an admin changes it."""

    def for_user(self, user: Any, action: str = READ) -> CatalogQuerySet[_M]:
        scope = scope_of(user)
        if scope.is_admin:
            return self.all()
        if not scope.has_any_role:
            return self.none()
        if action == CHANGE:
            return self.filter(owner_id=scope.user_id)
        return self.all()


def can_create_agent(user: Any, *, department_id: int | None, team_id: int | None) -> bool:
    return scope_of(user).covers(Role.OWNER, department_id=department_id, team_id=team_id)


def can_create_catalog_entry(user: Any) -> bool:
    scope = scope_of(user)
    return scope.is_admin or scope.has_role(Role.OWNER)


class Agent(models.Model):
    """A registered agent: who owns it, what it is for, and the envelope it runs in."""

    name = models.CharField(max_length=NAME_MAX)
    slug = models.SlugField(
        max_length=SLUG_MAX, unique=True, validators=[slug_validator, validate_unreserved_slug]
    )
    mission = models.TextField(
        max_length=2000, help_text="What this agent is for, in a sentence or two."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_agents",
    )
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="agents")
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="agents"
    )
    business_process = models.CharField(max_length=200, blank=True)
    model_family = models.CharField(max_length=100, blank=True)
    default_model = models.CharField(max_length=100, blank=True)
    providers = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    autonomy_level = models.PositiveSmallIntegerField(
        choices=AutonomyLevel.choices, default=AutonomyLevel.L1
    )
    environments = models.JSONField(default=list, blank=True, validators=[validate_environments])
    status = models.CharField(max_length=16, choices=AgentStatus.choices, default=AgentStatus.DRAFT)
    failure_posture = models.CharField(
        max_length=16, choices=FailurePosture.choices, default=FailurePosture.CLOSED
    )
    shutdown_action = models.CharField(
        "shutdown safe-state action",
        max_length=500,
        blank=True,
        help_text="What puts the work in a safe state when the agent is stopped.",
    )
    shutdown_webhook = models.URLField(
        "safe-state webhook",
        max_length=500,
        blank=True,
        help_text="Called (signed POST) when a kill switch stops the agent; the answer is kept.",
    )
    shutdown_webhook_secret = models.CharField(max_length=200, blank=True)
    shutdown_contact = models.CharField(max_length=200, blank=True)
    shutdown_notes = models.TextField(max_length=2000, blank=True)
    rollback_action = models.CharField(
        "rollback action",
        max_length=500,
        blank=True,
        help_text="How to undo what the agent did, e.g. revert to the previous version.",
    )
    rollback_contact = models.CharField(max_length=200, blank=True)
    rollback_notes = models.TextField(max_length=2000, blank=True)
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    instructions = models.TextField(max_length=INSTRUCTIONS_MAX, blank=True)
    knowledge_base_version = models.CharField(max_length=100, blank=True)
    parameters = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    run_token_ttl_seconds = models.PositiveIntegerField(
        "run token lifetime (seconds)",
        default=RUN_TOKEN_TTL_DEFAULT,
        validators=[MinValueValidator(RUN_TOKEN_TTL_MIN), MaxValueValidator(RUN_TOKEN_TTL_MAX)],
        help_text="How long a run token lives without a heartbeat.",
    )
    delegates_to = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_slug_list],
        help_text="Slugs of the agents this agent may start as sub-agents.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["department", "status"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("registry:agent-detail", args=[self.slug])


class Tool(models.Model):
    """The tool boundary contract: what a tool does, what it must never do, and its shape."""

    name = models.CharField(max_length=NAME_MAX)
    slug = models.SlugField(
        max_length=SLUG_MAX, unique=True, validators=[slug_validator, validate_unreserved_slug]
    )
    description = models.TextField(max_length=2000)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_tools",
    )
    risk_class = models.CharField(max_length=16, choices=RiskClass.choices, default=RiskClass.LOW)
    actions = models.JSONField(
        default=list,
        validators=[validate_actions],
        help_text="The operations a grant can allow, e.g. read, update, close.",
    )
    capabilities = models.TextField("what it can do", max_length=2000, blank=True)
    prohibitions = models.TextField("what it must never do", max_length=2000, blank=True)
    input_schema = models.JSONField(default=dict, validators=[validate_json_schema])
    output_schema = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_json_schema],
        help_text="Empty when the tool's output is not described.",
    )
    data_classes = models.ManyToManyField(DataClass, blank=True, related_name="tools")
    rate_limit_per_minute = models.PositiveIntegerField(null=True, blank=True)
    cost_per_call_usd = models.DecimalField(
        "cost per call (USD)",
        max_digits=12,
        decimal_places=6,
        default=Decimal(0),
        help_text="What one call of the tool costs, in US dollars (a paid API, a lookup "
        "service); 0 when a call costs nothing. Spend budgets count it.",
    )
    approval_required = models.BooleanField(
        default=False, help_text="Every call waits for a person's approval."
    )
    reversible = models.BooleanField(default=True)
    rollback_hint = models.CharField(max_length=500, blank=True)
    # What an approver is shown (apps/approvals): the preview the agent must supply, where in
    # the arguments the blast radius is read, the systems a call reaches and what it sets off.
    preview_format = models.CharField(
        max_length=8,
        choices=PreviewFormat.choices,
        blank=True,
        help_text="The preview an agent supplies with a gated call (current and proposed state, "
        "or a unified diff).",
    )
    blast_radius = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_blast_radius],
        help_text='Where the arguments say the reach, as JSON pointers: {"records": "/ids", '
        '"people": "/recipients", "money": "/amount", "currency": "/currency"}.',
    )
    systems = models.JSONField(default=list, blank=True, validators=[validate_string_list])
    downstream_tools = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_string_list],
        help_text="Tools this one sets off (slugs).",
    )
    audit_event = models.CharField(
        max_length=100,
        blank=True,
        help_text="The event name the tool emits, e.g. crm.record.updated",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet["Tool"].as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_per_call_usd__gte=0), name="tool_cost_per_call_not_negative"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("registry:tool-detail", args=[self.slug])

    @property
    def cost_per_call_text(self) -> str:
        """The cost per call without trailing zeros: ``0.002``, ``1.5``, ``0``."""
        return format(Decimal(str(self.cost_per_call_usd)).normalize(), "f")

    @property
    def is_ungated_critical(self) -> bool:
        return self.risk_class == RiskClass.CRITICAL and not self.approval_required


class ToolGrant(models.Model):
    """Agent and tool: which actions, in which environments, under which constraints, until when."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="grants")
    tool = models.ForeignKey(Tool, on_delete=models.PROTECT, related_name="grants")
    actions = models.JSONField(default=list, validators=[validate_actions])
    environments = models.JSONField(default=list, validators=[validate_environments])
    constraints = models.JSONField(default=dict, blank=True, validators=[validate_json_object])
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tool__name"]
        constraints = [models.UniqueConstraint(fields=["agent", "tool"], name="one_grant_per_tool")]

    def __str__(self) -> str:
        return f"{self.agent} → {self.tool} ({', '.join(self.actions)})"


class MemoryStore(models.Model):
    """A place agents remember things, with the class that decides who may write to it."""

    name = models.CharField(max_length=NAME_MAX)
    slug = models.SlugField(
        max_length=SLUG_MAX, unique=True, validators=[slug_validator, validate_unreserved_slug]
    )
    description = models.TextField(max_length=2000, blank=True)
    store_class = models.CharField(max_length=16, choices=MemoryClass.choices)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: kept for the run (working) or until deleted."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_memory_stores",
    )
    data_classes = models.ManyToManyField(DataClass, blank=True, related_name="memory_stores")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CatalogQuerySet["MemoryStore"].as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("registry:memory-detail", args=[self.slug])


class MemoryBinding(models.Model):
    """Which agent may read, or read and write, which memory store."""

    store = models.ForeignKey(MemoryStore, on_delete=models.PROTECT, related_name="bindings")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="memory_bindings")
    access = models.CharField(
        max_length=16, choices=MemoryAccess.choices, default=MemoryAccess.READ
    )

    class Meta:
        ordering = ["store__name"]
        constraints = [
            models.UniqueConstraint(fields=["store", "agent"], name="one_binding_per_store")
        ]

    def __str__(self) -> str:
        return f"{self.agent} · {self.store} ({self.access})"


class AgentVersion(models.Model):
    """An immutable snapshot of everything that changes an agent's behaviour.

    A new version is written whenever that snapshot changes (model, instructions, grants,
    memory bindings, knowledge base, parameters, autonomy, environments, failure posture);
    rows are never updated. Runs will link to the version in force.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    snapshot = models.JSONField()
    snapshot_hash = models.CharField(max_length=64)
    instructions_hash = models.CharField(max_length=64)
    change_summary = models.CharField(max_length=300, blank=True)
    created_by_name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.number}"


class Deployment(models.Model):
    """Which version of an agent serves in one environment (docs/releases.md).

    An environment with no deployment serves the agent's latest version. Promotion moves a
    version along dev → staging → canary → prod; in canary, ``traffic_percent`` of the runs
    started in prod go to the canary's version. ``previous`` is what a rollback restores.
    """

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="deployments")
    environment = models.CharField(max_length=16, choices=Environment.choices)
    version = models.ForeignKey(AgentVersion, on_delete=models.PROTECT, related_name="+")
    previous = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    traffic_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    deployed_by_name = models.CharField(max_length=200)
    deployed_at = models.DateTimeField()
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["agent", "environment"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "environment"], name="one_deployment_per_environment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent.slug} v{self.version.number} in {self.environment}"
