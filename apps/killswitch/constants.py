from django.db import models

REASON_MAX = 1000
# The audit events about one switch (engaged, safe-state outcomes, released) target this type.
KILL_TARGET = "kill_switch"
KILLED_OUTCOME = "killed"


class KillScope(models.TextChoices):
    RUN = "run", "One run"
    AGENT = "agent", "An agent (all its runs)"
    TEAM = "team", "A team"
    DEPARTMENT = "department", "A department"
    GLOBAL = "global", "Everything"


class MemoryReads(models.TextChoices):
    """What a frozen memory store still allows while the switch is engaged: writes never."""

    ALLOW = "allow", "Reads go on (as policy says)"
    DENY = "deny", "Reads are refused too"


class SafeStateStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (retrying)"
    GAVE_UP = "gave_up", "Gave up"


class NoticeKind(models.TextChoices):
    EMAIL = "email", "Email to the owner"
    SLACK = "slack", "Slack-compatible webhook"
    WEBHOOK = "webhook", "Signed webhook"


class TriggerKind(models.TextChoices):
    BUDGET_BREACH = "budget_breach", "A budget is breached"
    CIRCUIT_BREAKER = "circuit_breaker", "The circuit breaker trips"
    DRIFT_CRITICAL = "drift_critical", "A critical drift alert"
    DENIALS = "denials", "Repeated denials"


class TriggerResponse(models.TextChoices):
    KILL_RUN = "kill_run", "Kill the run"
    KILL_AGENT = "kill_agent", "Kill the agent (all its runs)"
    SUSPEND_AGENT = "suspend_agent", "Suspend the agent"


# Frozen memory stores are cached per process; engaging or releasing a switch bumps this
# generation, which every process reads from Redis at most this often.
FREEZE_GENERATION = "kill-freeze"
FREEZE_REFRESH_SECONDS = 0.1
# However quiet Redis is, a process rebuilds its table at least this often.
FREEZE_CACHE_SECONDS = 5.0
