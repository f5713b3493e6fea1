from django.db import models

CREDENTIAL_KIND = "agent"
RUN_TOKEN_KIND = "run"
TASK_MAX = 2000
OUTCOME_MAX = 100

# Tool actions that only read; an L0 agent may use only these, and a read-only failure posture
# allows only these when a store Tether needs is down.
READ_ACTIONS = frozenset({"read", "get", "list", "search", "lookup", "query", "fetch", "view"})

# A retried request (same Idempotency-Key) within this time gets the first answer again.
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

# Risk weights summed by a "risk" budget.
RISK_WEIGHTS = {"low": 1, "medium": 3, "high": 10, "critical": 30}


class RunState(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"
    KILLED = "killed", "Killed"
    EXPIRED = "expired", "Expired"


class Action(models.TextChoices):
    TOOL_INVOKE = "tool.invoke", "Tool call"
    MODEL_CALL = "model.call", "Model call"
    MEMORY_READ = "memory.read", "Memory read"
    MEMORY_WRITE = "memory.write", "Memory write"
    DELEGATE = "delegate", "Delegation"


class Disposition(models.TextChoices):
    ALLOW = "allow", "Allow"
    DENY = "deny", "Deny"
    MODIFY = "modify", "Modify"
    ASK = "ask", "Ask a person"
    DEFER = "defer", "Defer"


class Reason(models.TextChoices):
    """Machine reason codes carried by every decision."""

    ALLOWED = "allowed"
    RUN_NOT_RUNNING = "run_not_running"
    RUN_KILLED = "run_killed"
    MEMORY_FROZEN = "memory_frozen"
    AGENT_NOT_ACTIVE = "agent_not_active"
    ENVIRONMENT_NOT_ALLOWED = "environment_not_allowed"
    TOOL_UNKNOWN = "tool_unknown"
    TOOL_NOT_GRANTED = "tool_not_granted"
    ACTION_NOT_GRANTED = "action_not_granted"
    GRANT_EXPIRED = "grant_expired"
    ARGUMENTS_INVALID = "arguments_invalid"
    CONSTRAINT_VIOLATED = "constraint_violated"
    AUTONOMY_READ_ONLY = "autonomy_read_only"
    RATE_LIMITED = "rate_limited"
    POLICY_DENIED = "policy_denied"
    POLICY_PERMITTED = "policy_permitted"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BUDGET_DEGRADED = "budget_degraded"
    BUDGET_ASK = "budget_ask"
    BUDGET_OVER_CONTINUE = "budget_over_continue"
    CIRCUIT_OPEN = "circuit_open"
    APPROVAL_REQUIRED = "approval_required"
    APPROVED = "approved"  # allowed against an approval, which this step used up
    RISK_FORBIDDEN = "risk_forbidden"
    APPROVAL_INVALID = "approval_invalid"
    APPROVAL_MISMATCH = "approval_mismatch"
    APPROVAL_USED = "approval_used"
    APPROVAL_REJECTED = "approval_rejected"
    APPROVAL_CHANGES_REQUESTED = "approval_changes_requested"
    APPROVAL_EXPIRED = "approval_expired"
    APPROVAL_CANCELLED = "approval_cancelled"
    MEMORY_FORBIDDEN = "memory_forbidden"
    MEMORY_NOT_BOUND = "memory_not_bound"
    MEMORY_WRITE_NOT_GRANTED = "memory_write_not_granted"
    DELEGATION_NOT_ALLOWED = "delegation_not_allowed"
    DECISION_PENDING = "decision_pending"
    STORE_UNAVAILABLE = "store_unavailable"
    FAIL_OPEN = "fail_open"


class BudgetKind(models.TextChoices):
    TOKENS = "tokens", "Tokens"
    TOOL_CALLS = "tool_calls", "Tool calls"
    RETRIES = "retries", "Retries"
    WALL_TIME = "wall_time", "Wall time (seconds)"
    SPEND = "spend", "Spend (USD)"
    SCOPE = "scope", "Scope (distinct tools)"
    RISK = "risk", "Risk (sum of weights)"


class BudgetScope(models.TextChoices):
    RUN = "run", "Each run of the agent"
    AGENT_DAY = "agent_day", "The agent, per day"
    AGENT_MONTH = "agent_month", "The agent, per month"
    DEPARTMENT_MONTH = "department_month", "The department, per month"
    TEAM_MONTH = "team_month", "The team, per month"


class BudgetEdge(models.TextChoices):
    """What happens when a budget would be exceeded."""

    CONTINUE = "continue", "Continue (record only)"
    DEGRADE = "degrade", "Degrade (cheaper model)"
    ASK = "ask", "Ask a person"
    STOP = "stop", "Stop (deny)"


# Budgets: the generation their writes bump (``apps.common.generation``), so every process's
# per-agent budget cache follows at once; and how often a process reads the shared counter.
BUDGET_GENERATION = "budgets"
BUDGET_REFRESH_SECONDS = 1.0

BUDGET_NAME_MAX = 100
BUDGET_SLUG_MAX = 60
BUDGET_MODEL_MAX = 100
# Large enough for a year of tokens of a busy department, small enough to be a real limit.
BUDGET_LIMIT_MAX = 10**9
BUDGET_DECIMAL_PLACES = 4
# Every applicable budget is one more counter in each decision's reservation.
BUDGETS_PER_OWNER_MAX = 50

# Kinds counted in whole units; only spend is money with cents.
WHOLE_BUDGET_KINDS = frozenset(
    {
        BudgetKind.TOKENS,
        BudgetKind.TOOL_CALLS,
        BudgetKind.RETRIES,
        BudgetKind.WALL_TIME,
        BudgetKind.SCOPE,
        BudgetKind.RISK,
    }
)
# A degrade edge answers a model call with a cheaper model: only kinds a model call spends.
DEGRADABLE_BUDGET_KINDS = frozenset({BudgetKind.TOKENS, BudgetKind.SPEND})
