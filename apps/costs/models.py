"""Model prices an admin sets over the maintained catalogue: negotiated rates, in force from a
date (the catalogue itself is the ``genai-prices`` package, apps/costs/prices.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.approvals.models import DeliveredNotice, NoticeKind

PRICE_DIGITS = 12
PRICE_PLACES = 6


class ModelPrice(models.Model):
    """What one model costs, in US dollars per million tokens, from ``effective_from`` until
    the next override of the same model (and provider) takes over."""

    provider = models.CharField(
        max_length=100, blank=True, help_text="Empty: the model whoever serves it."
    )
    model = models.CharField(max_length=200)
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    output_per_mtok = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    cached_input_per_mtok = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        help_text="Empty: cached input tokens cost what input tokens cost.",
    )
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "provider", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from"], name="one_price_per_moment"
            ),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0)
                & Q(output_per_mtok__gte=0)
                & (Q(cached_input_per_mtok__isnull=True) | Q(cached_input_per_mtok__gte=0)),
                name="prices_are_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model} from {self.effective_from:%Y-%m-%d}"


# --- rollups (apps/costs/rollups.py) -----------------------------------------------------------
# Ids are plain integers, 0 for "none" (a span of an unregistered agent, an agent in no team,
# a run on nobody's behalf), not foreign keys: the unique keys below must treat "none" as one
# value on every backend, and the dashboards join names from the few departments and agents.

USD_DIGITS = 18
USD_PLACES = 6


def _usd() -> models.DecimalField:
    return models.DecimalField(max_digits=USD_DIGITS, decimal_places=USD_PLACES, default=0)


class DaySpend(models.Model):
    """What a day rollup holds whatever its key adds: the day, the department, the environment
    and the spend with its number of calls."""

    day = models.DateField()
    department_id = models.BigIntegerField(default=0)
    environment = models.CharField(max_length=32)
    cost_usd = _usd()
    calls = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class ModelSpend(DaySpend):
    """A day rollup by model, provider and price source, with the tokens."""

    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=9)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class CostDaily(ModelSpend):
    """What was spent in one UTC day, per agent (and its team, department and business
    process when the spend was stored), environment, model, provider and price source
    (``unpriced`` rows are charged at the worst case). Maintained as spans are stored."""

    agent_id = models.BigIntegerField(default=0)
    team_id = models.BigIntegerField(default=0)
    business_process = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "day", "agent_id", "environment", "model", "provider", "source",
                    "department_id", "team_id", "business_process",
                ],
                name="cost_daily_key",
            ),
        ]  # fmt: skip
        indexes = [models.Index(fields=["department_id", "day"], name="cost_daily_department")]

    def __str__(self) -> str:
        return f"{self.day} agent {self.agent_id} {self.model or self.source}: {self.cost_usd}"


class DepartmentCostDaily(ModelSpend):
    """:class:`CostDaily` without the agent: a department's (and team's) spend per day,
    environment, model, provider and price source. The finance console's charts read it: a
    few dozen rows a day, where the full key has thousands once there are many agents."""

    team_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "day", "department_id", "team_id", "environment", "model", "provider",
                    "source",
                ],
                name="department_cost_daily_key",
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.day} department {self.department_id}: {self.cost_usd}"


class AgentCostDaily(DaySpend):
    """An agent's spend per day and environment, whatever the model: the top agents."""

    agent_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent_id", "department_id", "environment"],
                name="agent_cost_daily_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} agent {self.agent_id}: {self.cost_usd}"


class PersonCostDaily(DaySpend):
    """What was spent in one UTC day by runs on behalf of one person, per department and
    environment (a run's ``on_behalf_of``; 0 for runs on nobody's behalf)."""

    person_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "person_id", "department_id", "environment"],
                name="person_cost_daily_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} person {self.person_id}: {self.cost_usd}"


class MonthCost(models.Model):
    """What one department (and team, 0 for agents in no team) spent in one calendar month
    (UTC; ``month`` is its first day): what monthly budgets are held against, at a glance."""

    month = models.DateField()
    department_id = models.BigIntegerField(default=0)
    team_id = models.BigIntegerField(default=0)
    cost_usd = _usd()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["month", "department_id", "team_id"], name="month_cost_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} department {self.department_id}: {self.cost_usd}"


class RunCost(models.Model):
    """What one run has cost so far (its spans that carry ``tether.run.id``).

    Once the run has ended it is counted once in :class:`TaskCostDaily` under its end state
    and outcome (``counted_state`` set, by the minute job); spend that arrives later (a late
    span) is added to both, so the task rollup never misses it.
    """

    run_id = models.UUIDField(primary_key=True)
    agent_id = models.BigIntegerField(default=0)
    department_id = models.BigIntegerField(default=0)
    team_id = models.BigIntegerField(default=0)
    environment = models.CharField(max_length=32)
    cost_usd = _usd()
    calls = models.BigIntegerField(default=0)
    counted_state = models.CharField(max_length=16, blank=True)
    counted_outcome = models.CharField(max_length=100, blank=True)
    counted_day = models.DateField(null=True, blank=True)

    def __str__(self) -> str:
        return f"run {self.run_id}: {self.cost_usd}"


class TaskCostDaily(models.Model):
    """Runs that ended in one UTC day, per department, environment, end state and outcome,
    with what they cost: the cost of a task, and of a successful one."""

    day = models.DateField()
    department_id = models.BigIntegerField(default=0)
    environment = models.CharField(max_length=32)
    state = models.CharField(max_length=16)
    outcome = models.CharField(max_length=100, blank=True)
    runs = models.BigIntegerField(default=0)
    cost_usd = _usd()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "department_id", "environment", "state", "outcome"],
                name="task_cost_daily_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} department {self.department_id} {self.state}: {self.runs} runs"


class RollupCursor(models.Model):
    """How far a rollup job has read (the minute job: runs ended up to ``position``)."""

    name = models.CharField(max_length=40, unique=True)
    position = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.position:%Y-%m-%d %H:%M:%S}"


# --- monthly budget alerts (apps/costs/alerts.py, docs/costs-budgets.md) ------------------------


class BudgetAlert(models.Model):
    """A monthly spend budget (a department's or a team's) crossed one of its thresholds (50,
    80 or 100 % of its limit) in one calendar month: at most once per budget, month and
    threshold, whoever checks. ``covered_by``: the higher threshold crossed in the same check
    whose message told of this one too (only the highest crossed at once is announced)."""

    budget = models.ForeignKey("runtime.Budget", on_delete=models.CASCADE, related_name="alerts")
    period = models.DateField(help_text="The month's first day (UTC).")
    threshold = models.PositiveSmallIntegerField(help_text="Per cent of the limit: 50, 80 or 100.")
    spent_usd = models.DecimalField(max_digits=USD_DIGITS, decimal_places=USD_PLACES)
    limit_usd = models.DecimalField(max_digits=USD_DIGITS, decimal_places=USD_PLACES)
    covered_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="covers"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-threshold", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period", "threshold"], name="budget_alert_once_per_month"
            ),
        ]

    def __str__(self) -> str:
        return f"budget {self.budget_id} {self.period:%Y-%m} at {self.threshold}%"

    @property
    def used_percent(self) -> int:
        """What was spent when it fired, in whole per cent of the limit, rounded down: an
        alert at 100 % never reads 99 %, nor 99.6 % as 100 %."""
        return int(self.spent_usd * 100 / self.limit_usd) if self.limit_usd > 0 else 0


AlertNoticeKind = NoticeKind  # the approvals notices' kinds: an email, a channel


class BudgetAlertNotice(DeliveredNotice):
    """One telling of an alert: an email to a finance person, or a message on a notification
    channel, and how sending it went."""

    alert = models.ForeignKey(BudgetAlert, on_delete=models.CASCADE, related_name="notices")

    class Meta(DeliveredNotice.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "kind", "target"], name="budget_alert_notice_once_per_target"
            ),
        ]
