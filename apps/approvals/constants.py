from django.db import models

from apps.registry.constants import RiskClass

REASON_MAX = 2000
FEEDBACK_MAX = 2000
ACTION_MAX = 40
# What an agent may send as a preview: enough for a real diff, not a database dump.
PREVIEW_MAX_BYTES = 256 * 1024
PREVIEW_TABLE_ROWS_MAX = 2000
# Arguments are shown to a person: rendered as indented JSON, cut past this.
ARGUMENTS_SHOWN_MAX = 20_000
# A long-poll holds at most this long; the SDK asks again until its own deadline.
WAIT_MAX_SECONDS = 30
WAIT_DEFAULT_SECONDS = 25.0
# While waiting, the store is read again this often, whatever the channel layer says.
WAIT_RECHECK_SECONDS = 1.0
# The cache generation gate and risk-mapping writes bump (apps.common.generation).
GATES_GENERATION = "approval-gates"
GATES_CACHE_SECONDS = 5.0
INBOX_PAGE = 100
INBOX_GROUP = "approvals.inbox"


class GateOutcome(models.TextChoices):
    """What a risk class does to a step that reaches it."""

    ALLOW = "allow", "Allow"
    ASK = "ask", "Ask a person"
    FORBID = "forbid", "Forbid"


class ExpiryOutcome(models.TextChoices):
    """What an unanswered request becomes at its deadline. The agent hears "expired" either way."""

    DENY = "deny", "Deny the step"
    PAUSE = "pause", "Pause the run (ask again later)"


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    REQUEST_CHANGES = "request_changes", "Request changes"
    ESCALATE = "escalate", "Escalate"


# The gate each risk class has until an admin says otherwise. Critical never runs unasked
# and needs two distinct approvers (four eyes). Below critical the agent's autonomy level
# decides (docs/autonomy-levels.md: L1 asks before every change, L2 before high-risk ones)
# until an admin sets a class to ask or forbid for everyone.
DEFAULT_GATES: dict[str, dict[str, object]] = {
    RiskClass.LOW: {"outcome": GateOutcome.ALLOW, "approvals_required": 1},
    RiskClass.MEDIUM: {"outcome": GateOutcome.ALLOW, "approvals_required": 1},
    RiskClass.HIGH: {"outcome": GateOutcome.ALLOW, "approvals_required": 1},
    RiskClass.CRITICAL: {"outcome": GateOutcome.ASK, "approvals_required": 2},
}
DEFAULT_EXPIRES_AFTER_SECONDS = 3600
DEFAULT_ESCALATE_AFTER_SECONDS = 1800
CRITICAL_APPROVALS_MIN = 2
