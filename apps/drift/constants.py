from django.db import models

METRIC_NAME_MAX = 60
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_.]{0,59}$"
SPAN_METRIC_PREFIX = "tether.metric."
CUSTOM_PREFIX = "metric:"  # a custom metric's key among the detectors' metrics


class Metric(models.TextChoices):
    """What the detectors watch, per agent version and environment (docs/drift.md#metrics)."""

    OUTCOME = "outcome", "Outcome"
    TOOL_MIX = "tool_mix", "Tool-call mix"
    ERROR_RATE = "error_rate", "Error rate"
    DENIAL_RATE = "denial_rate", "Denial rate"
    ASK_RATE = "ask_rate", "Ask rate"
    REJECTION_RATE = "rejection_rate", "Approval rejection rate"
    TOKENS = "tokens", "Tokens per task"
    COST = "cost", "Cost per task"
    LATENCY = "latency", "Latency"
    CUSTOM = "custom", "Custom metric"


class MetricKind(models.TextChoices):
    DISTRIBUTION = "distribution", "Distribution"
    PROPORTION = "proportion", "Proportion"
    CONTINUOUS = "continuous", "Continuous"


METRIC_KINDS: dict[str, str] = {
    Metric.OUTCOME: MetricKind.DISTRIBUTION,
    Metric.TOOL_MIX: MetricKind.DISTRIBUTION,
    Metric.ERROR_RATE: MetricKind.PROPORTION,
    Metric.DENIAL_RATE: MetricKind.PROPORTION,
    Metric.ASK_RATE: MetricKind.PROPORTION,
    Metric.REJECTION_RATE: MetricKind.PROPORTION,
    Metric.TOKENS: MetricKind.CONTINUOUS,
    Metric.COST: MetricKind.CONTINUOUS,
    Metric.LATENCY: MetricKind.CONTINUOUS,
    Metric.CUSTOM: MetricKind.CONTINUOUS,
}


class Window(models.TextChoices):
    HOUR = "hour", "Last hour"
    DAY = "day", "Last 24 hours"


class Severity(models.TextChoices):
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_ORDER = [Severity.WARNING.value, Severity.CRITICAL.value]


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    SNOOZED = "snoozed", "Snoozed"
    RESOLVED = "resolved", "Resolved"


LIVE_STATUSES = [AlertStatus.OPEN.value, AlertStatus.ACKNOWLEDGED.value, AlertStatus.SNOOZED.value]


class BaselineState(models.TextChoices):
    FORMING = "forming", "Forming"
    SET = "set", "Set"
    RETIRED = "retired", "Retired"


class BaselineSource(models.TextChoices):
    AUTOMATIC = "automatic", "Automatic (first runs of a version)"
    PINNED = "pinned", "Pinned by hand"
